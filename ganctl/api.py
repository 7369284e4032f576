"""The Python API for notebooks and scripts: compose a config, train, load a generator, draw samples.

    import ganctl
    cfg = ganctl.compose("mnist_bce", "dataset.root=../shared/data", "dataset.split=test", "trainer.steps=500")
    run = ganctl.train(cfg, "runs/first")
    G = ganctl.load(run.run_dir)
    G.grid(64, seed=0)          # a PIL image: Jupyter shows it inline

The same composition (Hydra's, from ganctl's conf/) and the same validation as `ganctl train`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ganctl import kinds, projection
from ganctl.commands.options import asked_labels
from ganctl.config import RunConfig
from ganctl.devices import resolve_device
from ganctl.errors import ConfigError
from ganctl.generation import class_columns, generate, seeded
from ganctl.runfolder import RunFolder
from ganctl.training.checkpoint import LoadedGenerator, load_generator


def compose(experiment: str | None = None, *overrides: str) -> RunConfig:
    """The typed config `ganctl train +experiment=EXPERIMENT OVERRIDES...` would run, checked.

    `experiment` is a name in conf/experiment/ (or None for the default config); overrides are
    Hydra's key=value strings, e.g. "optim.lr=1e-4".
    """
    from ganctl.launch import compose as composing
    from ganctl.launch.recipe import in_front
    from ganctl.training.validate import validate

    args = ([f"+experiment={experiment}"] if experiment else []) + list(overrides)
    args = [*in_front(args), *args]  # the image recipe and the run's length, as `ganctl train` has them
    composing.check_group_options(args)
    cfg = composing.checked(lambda: composing.compose_run_config(args))
    validate(cfg)
    return cfg


@dataclass
class Run:
    """A finished training run: its folder, its summary (steps, losses, speed) and its last checkpoint."""

    run_dir: Path
    summary: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return RunFolder(self.run_dir).last

    def generator(self, device: str = "cpu", ema: bool = True) -> "Generator":
        return load(self.run_dir, device=device, ema=ema)


def train(cfg: RunConfig | str, run_dir: str | os.PathLike | None = None, *overrides: str) -> Run:
    """Train `cfg` (a RunConfig, or an experiment name composed with `overrides`) into `run_dir`
    (default runs/DATE_TIME); returns the Run when training ends."""
    from ganctl.commands.train import run as run_training
    from ganctl.data import read_once
    from ganctl.training.validate import check_data, training_device

    if isinstance(cfg, str):
        cfg = compose(cfg, *overrides)
    elif overrides:
        raise ConfigError(
            "overrides go with an experiment name: ganctl.train('mnist_bce', 'optim.lr=1e-4'); "
            "accepted: a RunConfig alone, or a name and overrides"
        )
    with read_once():  # the size check and the run's load share one scan of a folder
        training_device(cfg)
        check_data(cfg)
        folder = Path(run_dir) if run_dir is not None else Path("runs") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        folder.mkdir(parents=True, exist_ok=True)
        return Run(folder, run_training(cfg, folder))


class Generator:
    """A trained generator: `sample` draws tensors, `grid` a picture."""

    def __init__(self, loaded: LoadedGenerator):
        self.loaded = loaded
        self.cfg = loaded.cfg

    def sample(
        self, n: int, seed: int = 0, truncation: float | None = None, class_: int | str | None = None
    ) -> torch.Tensor:
        """n samples on the CPU in the data's range (images N x C x H x W), the same for a seed on any device.

        `class_` asks a class-conditional generator for one class (an index or a name in `classes`);
        without it a conditional generator draws every class in turn, in equal blocks.
        """
        if n < 1:
            raise ConfigError(f"n={n} is invalid; accepted: a number of samples >= 1")
        if truncation is not None and not truncation > 0:
            raise ConfigError(f"truncation={truncation} is invalid; accepted: a number > 0, or None")
        if truncation is not None and self.cfg.model.latent != "normal":
            raise ConfigError("truncation applies to Gaussian latents; this model was trained on uniform ones")
        labels = asked_labels(self.loaded, n, class_)
        return generate(self.loaded.G, seeded(n, self.cfg.model, seed, truncation), 500, labels=labels)

    @property
    def classes(self) -> list[str] | None:
        """A conditional generator's class names, by label; None for an unconditional one."""
        return self.loaded.classes

    def grid(self, n: int = 64, seed: int = 0, nrow: int | None = None, class_: int | str | None = None) -> Image.Image:
        """n samples as one picture, as the dataset's kind draws it (a histogram for the 1-D Gaussian,
        a scatter over the modes for a 2-D mixture); one row per class for a conditional generator
        unless `class_` picks one."""
        x = self.sample(n, seed, class_=class_)
        if nrow is None and self.classes is not None and class_ is None:
            nrow = class_columns(n, len(self.classes))
        kind = kinds.of(self.cfg.dataset)
        return kind.picture(x, self.cfg.dataset, kind.file_title(self.cfg.dataset, n), nrow=nrow)

    def project(
        self,
        images: Sequence[str | os.PathLike] | torch.Tensor,
        class_: int | str | None = None,
        restarts: int = projection.RESTARTS,
        steps: int = projection.STEPS,
        seed: int = 0,
    ) -> projection.Projected:
        """The latents whose images best match `images` (files, read as `dataset=folder` reads them,
        or an N x C x H x W tensor in the data's range), found as `ganctl project` finds them: the
        result's `z`, `labels`, reconstructions `x`, `psnr` and `feature_distance`, one row per image."""
        from ganctl.commands.project import project_images, read_images

        if isinstance(images, torch.Tensor):
            targets = images
        else:
            targets = read_images([os.fspath(p) for p in images], self.loaded)
        return project_images(self.loaded, targets, class_, restarts, steps, seed)

    def export(self, path: str | os.PathLike, format: str = "onnx") -> Path:
        """Write this generator as `ganctl export --format FORMAT` does (torchscript or onnx), checked
        against PyTorch on fixed latents before the file appears; returns the path."""
        from ganctl.commands.export import write

        write(self.loaded, Path(path), format)
        return Path(path)

    def _repr_png_(self) -> bytes:  # Jupyter shows a Generator as a grid of 16
        import io

        buf = io.BytesIO()
        self.grid(16).save(buf, "PNG")
        return buf.getvalue()


def load(path: str | os.PathLike, device: str = "cpu", ema: bool = True) -> Generator:
    """The generator of a checkpoint or run folder (G_ema when it has one, unless ema=False)."""
    return Generator(load_generator(path, resolve_device(device, key="device"), use_ema=ema))
