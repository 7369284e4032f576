"""What differs by kind of data: 1-D points, 2-D points, images.

How samples are pictured, which files `ganctl sample` writes, what a run logs and how its samples
are scored all depend on the dataset record's `kind` (data.DatasetInfo), and this module is the one
place that chooses by it: the commands, the in-training evaluator and the API ask `of(cfg)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ganctl import images, metrics, plots
from ganctl.config import DatasetConfig
from ganctl.data import IMAGES, POINTS_1D, POINTS_2D, info, mixture_modes
from ganctl.files import atomic_write, write_folder


class Kind:
    """One kind of data; the subclasses fill in what differs."""

    name: str
    pixels = False  # samples are images
    outputs: tuple[str, ...]  # the output types of `ganctl sample -o`
    metric: str | None  # the in-training evaluator's metric under trainer.eval_metric=auto
    fields: tuple[str, ...] = ()  # the evaluator's metrics.csv columns
    row_fields: tuple[str, ...] = ()  # metrics.csv columns every log row gets from the fixed samples

    def row_values(self, fixed: torch.Tensor) -> dict:
        """Those columns' values for G's samples of the fixed latents."""
        return {}

    def picture_count(self, num_samples: int) -> int:
        """How many fixed latents the run's sample pictures draw."""
        return num_samples

    def file_title(self, d: DatasetConfig, n: int) -> str:
        """The title of a picture of n samples outside training (`ganctl sample`, the API's grid)."""
        return f"{n} samples"

    def picture(self, x: torch.Tensor, d: DatasetConfig, title: str, nrow: int | None = None) -> Image.Image:
        raise NotImplementedError

    def log_values(self, x: torch.Tensor) -> np.ndarray | None:
        """Samples for a TensorBoard histogram beside the picture (None: the picture says it all)."""
        return None

    def write(self, x: torch.Tensor, d: DatasetConfig, out: Path, kind: str, nrow: int | None, force: bool) -> None:
        """`ganctl sample`'s output `out` of type `kind` (one of `outputs`)."""
        raise NotImplementedError

    def summary(self, x: torch.Tensor, d: DatasetConfig) -> str | None:
        """The line `ganctl sample` prints about its samples (None: nothing to say)."""
        return None

    def score(self, x: torch.Tensor, d: DatasetConfig) -> tuple[dict, dict, str]:
        """`ganctl eval` of points: (the report's target, its metrics, the printed line)."""
        raise NotImplementedError

    def in_training(self, x: torch.Tensor, d: DatasetConfig, scorer: Callable) -> dict:
        """The evaluator's row for samples `x`; `scorer` scores images with ganctl's feature net."""
        raise NotImplementedError

    walks = True  # `ganctl interpolate` draws its latent walks (else it writes the raw tensor only)

    def walk(self, x: torch.Tensor, d: DatasetConfig, walk: Walk, frames: bool) -> list[Image.Image]:
        """`ganctl interpolate`'s pictures of G's outputs x (R paths x F frames x ...): one
        picture of the whole walk, or (`frames`) one per frame."""
        raise NotImplementedError


@dataclass
class Walk:
    """A latent walk: where each frame lies along its path, the path's latent points, the mode."""

    positions: torch.Tensor  # (R, F) positions along the path, 0 at the first point
    points: torch.Tensor  # (R, M, z_dim) the points the path passes through
    mode: str  # slerp or lerp


def _values(x: torch.Tensor) -> np.ndarray:
    """Points as float32 rows (1-D values as a flat vector)."""
    values = x.reshape(len(x), -1).numpy().astype(np.float32)
    return values[:, 0] if values.shape[1] == 1 else values


class Points(Kind):
    outputs = (".png", ".npy", ".csv", ".pt")
    PICTURE_SAMPLES = 10_000  # fixed latents for the run's histogram or scatter; 64 points make neither

    def picture_count(self, num_samples: int) -> int:
        return self.PICTURE_SAMPLES

    def write(self, x: torch.Tensor, d: DatasetConfig, out: Path, kind: str, nrow: int | None, force: bool) -> None:
        values = _values(x)
        if kind == ".png":
            images.save_png(self.picture(x, d, self.file_title(d, len(values))), out)
        elif kind == ".npy":
            atomic_write(out, lambda f: np.save(f, values))
        elif kind == ".csv":
            if values.ndim == 1:
                header, rows = "value", [f"{v:.7g}" for v in values]
            else:
                header, rows = "x,y", [f"{a:.7g},{b:.7g}" for a, b in values]
            atomic_write(out, lambda f: f.write((header + "\n" + "\n".join(rows) + "\n").encode()))
        else:
            atomic_write(out, lambda f: torch.save(x, f))


class Points1D(Points):
    """Values of a 1-D Gaussian (setup 002): a histogram against the target, W1 and KS scores."""

    name = POINTS_1D
    metric = "w1"
    fields = ("w1", "ks_statistic")
    # The fixed batch's mean and std say something only of 1-D samples (the Gaussian's target).
    row_fields = ("fake_mean", "fake_std")

    def row_values(self, fixed: torch.Tensor) -> dict:
        return {"fake_mean": fixed.mean().item(), "fake_std": fixed.std().item()}

    def picture(self, x: torch.Tensor, d: DatasetConfig, title: str, nrow: int | None = None) -> Image.Image:
        return plots.histogram(_values(x).ravel(), d.mean, d.std, title=title)

    def log_values(self, x: torch.Tensor) -> np.ndarray | None:
        return x.numpy()

    def summary(self, x: torch.Tensor, d: DatasetConfig) -> str | None:
        stats = metrics.moments(x.numpy())
        return "  ".join(f"{k} {v:.4f}" for k, v in stats.items()) + f"  (target mean {d.mean:g}, std {d.std:g})"

    def score(self, x: torch.Tensor, d: DatasetConfig) -> tuple[dict, dict, str]:
        result = metrics.gaussian1d_stats(x.numpy(), d.mean, d.std)
        line = (
            f"mean {result['mean']:.4f}  std {result['std']:.4f}  skewness {result['skewness']:.4f}  "
            f"kurtosis {result['kurtosis']:.4f}  ks {result['ks_statistic']:.4f}  "
            f"w1 {result['wasserstein1']:.4f}  (target N({d.mean:g}, {d.std:g}), n {len(x)})"
        )
        return {"mean": d.mean, "std": d.std}, result, line

    def walk(self, x: torch.Tensor, d: DatasetConfig, walk: Walk, frames: bool) -> list[Image.Image]:
        """The value plot: each path's G(z) against its position, with a moving cursor per frame."""
        values = x.reshape(x.shape[0], x.shape[1])
        names = [f"path {r}" for r in range(values.shape[0])]
        if walk.points.shape[-1] == 1:  # scalar latents: say which stretch of z each curve covers
            names = [
                f"{name}: z " + " -> ".join(f"{z:.3f}" for z in walk.points[r, :, 0].tolist())
                for r, name in enumerate(names)
            ]
        drawn = (values.double().numpy(), walk.positions.double().numpy(), d.mean, d.std, names)
        title = f"generated value G(z) along a {walk.mode} latent path"
        return plots.value_frames(*drawn, title) if frames else [plots.value_plot(*drawn, title)]

    def in_training(self, x: torch.Tensor, d: DatasetConfig, scorer: Callable) -> dict:
        stats = metrics.gaussian1d_stats(x.numpy(), d.mean, d.std)
        return {"w1": stats["wasserstein1"], "ks_statistic": stats["ks_statistic"]}


class Points2D(Points):
    """Points of a 2-D mixture (ring8, grid25): a scatter over the modes, mode coverage scores."""

    name = POINTS_2D
    metric = None  # the mode counts come from `ganctl eval` after the run
    walks = False  # a path through 2-D points has no picture yet: interpolate writes the tensor

    def picture(self, x: torch.Tensor, d: DatasetConfig, title: str, nrow: int | None = None) -> Image.Image:
        return plots.scatter(_values(x), mixture_modes(d), d.std, title=title)

    def file_title(self, d: DatasetConfig, n: int) -> str:
        return d.name  # plots.scatter adds the count

    def summary(self, x: torch.Tensor, d: DatasetConfig) -> str | None:
        stats = metrics.mode_stats(x.numpy(), mixture_modes(d), d.std)
        return (
            f"modes {stats['modes_covered']}/{stats['modes_total']}  "
            f"high_quality {stats['high_quality_share']:.3f}  (within {metrics.MODE_STDS:g} std of a mode)"
        )

    def score(self, x: torch.Tensor, d: DatasetConfig) -> tuple[dict, dict, str]:
        result = metrics.mode_stats(x.numpy(), mixture_modes(d), d.std)
        size = {"ring8": {"radius": d.radius}, "grid25": {"spacing": d.spacing}}.get(d.name, {})
        kl = "n/a" if result["mode_kl"] is None else f"{result['mode_kl']:.4f}"
        line = (
            f"modes {result['modes_covered']}/{result['modes_total']}  "
            f"high_quality {result['high_quality_share']:.3f}  kl {kl}  "
            f"(a mode counts with >= {metrics.MODE_SHARE:.2%} of samples within {metrics.MODE_STDS:g} std "
            f"{d.std:g}; n {len(x)})"
        )
        return {"modes": result["modes_total"], "std": d.std, **size}, result, line


class Images(Kind):
    """Images: grids, image files, FD and the classifier's scores."""

    name = IMAGES
    pixels = True
    outputs = (".png", ".npz", ".pt", "folder")
    metric = "fd"
    fields = ("fd", "kid", "classifier_score")  # the classifier's score only with its features

    def picture(self, x: torch.Tensor, d: DatasetConfig, title: str, nrow: int | None = None) -> Image.Image:
        pixels = x if x.dtype == torch.uint8 else images.to_uint8(x, d.range)
        return images.grid(pixels, nrow=nrow or max(1, int(math.sqrt(len(x)))))

    def write(self, x: torch.Tensor, d: DatasetConfig, out: Path, kind: str, nrow: int | None, force: bool) -> None:
        if kind == ".pt":
            atomic_write(out, lambda f: torch.save(x, f))
            return
        # uint8 input is already pixels (generate(..., convert=...)); floats are G's range.
        pixels = x if x.dtype == torch.uint8 else images.to_uint8(x, d.range)
        if kind == ".png":
            images.save_png(self.picture(pixels, d, "", nrow), out)
        elif kind == ".npz":
            # Public evaluators expect N x H x W (x C) uint8 in arr_0.
            array = pixels.permute(0, 2, 3, 1).numpy()
            array = array[..., 0] if array.shape[-1] == 1 else array
            atomic_write(out, lambda f: np.savez(f, array))
        else:  # folder of PNGs
            width = max(6, len(str(len(x) - 1)))
            files = {
                f"{i:0{width}d}.png": (lambda f, i=i: images.grid(pixels[i : i + 1], nrow=1, pad=0).save(f, "PNG"))
                for i in range(len(x))
            }
            write_folder(out, files, force)

    def walk(self, x: torch.Tensor, d: DatasetConfig, walk: Walk, frames: bool) -> list[Image.Image]:
        """One row per path, one column per frame; or per frame, the paths in a near-square grid."""
        pixels = images.to_uint8(x, d.range)
        if not frames:
            return [images.grid(pixels.flatten(0, 1), nrow=pixels.shape[1])]
        ncol = math.ceil(math.sqrt(pixels.shape[0]))
        return [images.grid(pixels[:, f], nrow=ncol) for f in range(pixels.shape[1])]

    def in_training(self, x: torch.Tensor, d: DatasetConfig, scorer: Callable) -> dict:
        return scorer(images.to_uint8(x, d.range))


KINDS: dict[str, Kind] = {k.name: k for k in (Points1D(), Points2D(), Images())}


def of(d: DatasetConfig | str) -> Kind:
    """The kind of a dataset config (or dataset name)."""
    return KINDS[info(d).kind]
