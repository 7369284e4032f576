"""Checkpoint files: plain dicts of tensors and builtins, versioned, written atomically; the one loader.

The payload is TrainingState.state_dict(). `load_generator` is how sample, interpolate, eval and
the Python API get a trained G back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganctl.config import RunConfig, to_run_config
from ganctl.errors import CheckpointError, ConfigError
from ganctl.files import atomic_write, link_as, refused
from ganctl.models import build_models
from ganctl.runfolder import RunFolder

FORMAT_VERSION = 1
MAGIC = "ganctl-checkpoint"


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically; a refused write (full disk, size limit) raises StorageError
    naming `path` and leaves the file that was there intact."""
    payload = {"magic": MAGIC, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda f: torch.save(payload, f))


def resolve_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder meaning its checkpoints/last.pt."""
    p = Path(path)
    if p.is_dir():
        last = RunFolder(p).last
        if not last.is_file():
            raise CheckpointError(f"{p} is a folder with no checkpoints/last.pt; pass a .pt file or a run folder")
        return last
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a .pt file or a run folder")
    return p


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = resolve_path(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # a damaged file fails in many ways inside torch.load (KeyError, EOFError, ...)
        reason = (str(exc).splitlines() or [""])[0]
        reason = f"{type(exc).__name__}: {reason[:100]}"
        try:
            with open(p, "rb") as f:
                zipped = f.read(2) == b"PK"  # torch.save writes a zip archive
            reason = f"damaged or cut short; {reason}" if zipped else "not a file written by torch.save: no zip header"
        except OSError:
            pass  # unreadable (permissions): the exception's own reason says so
        raise CheckpointError(f"{p} is not a readable ganctl checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("magic") != MAGIC:
        raise CheckpointError(f"{p} is not a ganctl checkpoint (no ganctl header)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {version!r}, newer than this ganctl reads "
            f"(up to {FORMAT_VERSION}); upgrade ganctl"
        )
    return ckpt


def save_step(run: RunFolder, step: int, payload: dict[str, Any], keep_last: int | None) -> Path:
    """checkpoints/step_N.pt, linked as last.pt; keeps the `keep_last` newest step files (all if None).

    last.pt moves to the new file only once that file is complete, so a failure anywhere here
    leaves last.pt at the previous checkpoint.
    """
    path = run.step_checkpoint(step)
    save(path, payload)
    link_as(path, run.last)
    if keep_last:
        for old in sorted(run.checkpoints.glob("step_*.pt"))[:-keep_last]:
            try:
                old.unlink(missing_ok=True)
            except OSError as exc:
                raise refused(old, exc, doing="delete") from None
    return path


@dataclass
class LoadedGenerator:
    """A checkpoint's generator, in eval mode on its device, with the config it was trained with."""

    G: nn.Module
    cfg: RunConfig
    data_shape: tuple[int, ...]
    path: Path
    ema: bool  # the weights are G_ema's
    classes: list[str] | None = None  # a conditional G's class names, by label
    step: int | None = None  # the training step the checkpoint was written at

    def class_label(self, asked: int | str) -> int:
        """The label of `--class` given as an index or a class name; ConfigError naming the valid ones."""
        if self.classes is None:
            raise ConfigError(
                f"class {asked!r}: this generator is not class-conditional (trained without model.conditional=true); "
                "accepted: no class"
            )
        text = str(asked)
        if text in self.classes:
            return self.classes.index(text)
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(self.classes):
            return int(text)
        names = ", ".join(f"{i}={name}" for i, name in enumerate(self.classes))
        if self.classes == [str(i) for i in range(len(self.classes))]:
            names = f"0..{len(self.classes) - 1}"
        raise ConfigError(f"class {asked!r} is not a class of this generator; accepted: {names}")


def load_generator(path: str | os.PathLike, device: torch.device, use_ema: bool = True) -> LoadedGenerator:
    """The generator of a checkpoint (or run folder), on `device`, in eval mode.

    Tensors are mapped to `device` as they load, so a checkpoint saved on a GPU samples on a CPU.
    """
    ckpt = load(path, map_location=device)
    resolved = resolve_path(path)
    try:
        cfg = to_run_config(ckpt["config"])
        shape = tuple(int(s) for s in ckpt["data_shape"])
        classes = ckpt.get("classes")
        G, _ = build_models(cfg.model, shape, len(classes or []))
        ema = use_ema and ckpt.get("G_ema") is not None
        G.load_state_dict(ckpt["G_ema"] if ema else ckpt["G"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise CheckpointError(f"{resolved}: generator does not match its recorded config ({reason})") from None
    classes = classes if cfg.model.conditional else None
    return LoadedGenerator(G.to(device).eval(), cfg, shape, resolved, ema, classes, ckpt.get("step"))


def load_discriminator(model: LoadedGenerator) -> nn.Module:
    """The discriminator saved with a loaded generator, on its device, in eval mode (for its features)."""
    device = next(model.G.parameters()).device
    ckpt = load(model.path, map_location=device)
    try:
        _, D = build_models(model.cfg.model, model.data_shape, len(ckpt.get("classes") or []))
        D.load_state_dict(ckpt["D"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise CheckpointError(f"{model.path}: discriminator does not match its recorded config ({reason})") from None
    return D.to(device).eval()
