"""ganctl sample: draw samples from a trained generator into a grid, files, .npz, .pt or stats."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ganctl import images, metrics, plots
from ganctl.data import MIXTURES, mixture_modes
from ganctl.devices import resolve_device
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.files import atomic_write, refused
from ganctl.generation import class_columns, class_labels, generate, seeded
from ganctl.training.checkpoint import LoadedGenerator, load_generator

IMAGE_OUTPUTS = (".png", ".npz", ".pt", "folder")
VALUE_OUTPUTS = (".png", ".npy", ".csv", ".pt")


def output_kind(out: Path) -> str:
    return "folder" if out.suffix == "" or out.is_dir() else out.suffix.lower()


def claim_output(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ConfigError(f"output {out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist; create it first")


def write_folder(out: Path, files: dict[str, Callable[[io.BufferedWriter], None]], force: bool) -> None:
    """Fill a temporary sibling folder, then swap it into place: no half-written output folder.

    A write the environment refuses (full disk, size limit) raises StorageError naming the file,
    with the temporary folder gone and an existing output left as it was.
    """
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    current = tmp
    try:
        tmp.mkdir()
        for name, write in files.items():
            current = tmp / name
            with open(current, "wb") as f:
                write(f)
        current = out
        if out.exists() and force:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno is None:  # PIL's own OSErrors ("cannot write mode ...") are bugs, not refusals
            raise
        raise refused(current, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_images(x: torch.Tensor, model: LoadedGenerator, out: Path, nrow: int | None, force: bool) -> None:
    kind = output_kind(out)
    if kind == ".pt":
        atomic_write(out, lambda f: torch.save(x, f))
        return
    # uint8 input is already pixels (generate(..., convert=...) in main); floats are G's range.
    pixels = x if x.dtype == torch.uint8 else images.to_uint8(x, model.cfg.dataset.range)
    if kind == ".png":
        images.save_png(images.grid(pixels, nrow=nrow or max(1, int(len(x) ** 0.5))), out)
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


def moments(values: np.ndarray) -> dict[str, float]:
    v = values.astype(np.float64).ravel()
    mean, std = v.mean(), v.std()
    z = (v - mean) / std if std > 0 else np.zeros_like(v)
    return {"mean": mean, "std": std, "skewness": (z**3).mean(), "kurtosis": (z**4).mean() - 3.0}


def save_values(x: torch.Tensor, model: LoadedGenerator, out: Path) -> None:
    """1-D values or 2-D points (one row each): a picture against the target, .npy, .csv or .pt."""
    d = model.cfg.dataset
    values = x.reshape(len(x), -1).numpy().astype(np.float32)
    if values.shape[1] == 1:
        values = values[:, 0]
    kind = output_kind(out)
    if kind == ".png" and d.name in MIXTURES:
        images.save_png(plots.scatter(values, mixture_modes(d), d.std, title=d.name), out)
    elif kind == ".png":
        images.save_png(plots.histogram(values, d.mean, d.std, title=f"{len(values)} samples"), out)
    elif kind == ".npy":
        atomic_write(out, lambda f: np.save(f, values))
    elif kind == ".csv":
        header, rows = (
            ("value", [f"{v:.7g}" for v in values])
            if values.ndim == 1
            else ("x,y", [f"{a:.7g},{b:.7g}" for a, b in values])
        )
        atomic_write(out, lambda f: f.write((header + "\n" + "\n".join(rows) + "\n").encode()))
    else:
        atomic_write(out, lambda f: torch.save(x, f))


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="ganctl sample", description="Draw samples from a trained generator.")
    p.add_argument("checkpoint", help="a .pt checkpoint, or a run folder (its checkpoints/last.pt)")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument(
        "-o",
        "--output",
        default="samples.png",
        help="images: .png grid, .npz (uint8 arr_0), .pt (raw tensor) or a folder of PNGs; "
        "1-D: .png histogram, .npy, .csv or .pt; 2-D: .png scatter, .npy/.csv/.pt of N x 2 points "
        "(default samples.png)",
    )
    p.add_argument("--seed", type=int, default=0, help="latent seed; the same seed gives the same samples")
    p.add_argument("--batch-size", type=int, default=500, help="samples generated at once (default 500)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--nrow", type=int, default=None, help="images per row of a .png grid (default sqrt(n))")
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        help="redraw Gaussian latent entries with |z| > T (the truncation trick)",
    )
    p.add_argument(
        "--save-latents", default=None, metavar="Z.pt", help="also save the latents, e.g. for ganctl interpolate --from"
    )
    add_class_option(p, "every class, each in whole grid rows")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if EMA weights exist")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def add_class_option(p: ArgumentParser, default: str) -> None:
    """--class C: a conditional generator's class by index or name (LoadedGenerator.class_label checks it)."""
    p.add_argument(
        "--class",
        dest="class_",
        default=None,
        metavar="C",
        help=f"a conditional generator's class, by index or name (default: {default})",
    )


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        raise ConfigError(f"-n {args.n} is invalid; accepted: a number of samples >= 1")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} is invalid; accepted: an integer >= 1")
    if args.nrow is not None and args.nrow < 1:
        raise ConfigError(f"--nrow {args.nrow} is invalid; accepted: an integer >= 1")
    if args.truncation is not None and not args.truncation > 0:
        raise ConfigError(f"--truncation {args.truncation} is invalid; accepted: a number > 0")
    device = resolve_device(args.device, key="--device")
    model = load_generator(args.checkpoint, device, use_ema=not args.no_ema)
    out = Path(args.output)
    kind = output_kind(out)
    accepted = IMAGE_OUTPUTS if model.is_image else VALUE_OUTPUTS
    if kind not in accepted:
        raise ConfigError(f"-o {out}: unknown output type {kind!r} for this model; accepted: {', '.join(accepted)}")
    if args.truncation is not None and model.cfg.model.latent != "normal":
        raise ConfigError("--truncation applies to Gaussian latents; this model was trained on uniform ones")
    labels = None
    if args.class_ is not None or model.classes is not None:
        label = None if args.class_ is None else model.class_label(args.class_)
        labels = class_labels(args.n, len(model.classes), label)
        if label is None and args.nrow is None:
            args.nrow = class_columns(args.n, len(model.classes))
    claim_output(out, args.force)
    if args.save_latents:
        claim_output(Path(args.save_latents), args.force)

    z = seeded(args.n, model.cfg.model, args.seed, args.truncation)
    to_pixels = None
    if model.is_image and kind != ".pt":
        to_pixels = lambda batch: images.to_uint8(batch, model.cfg.dataset.range)  # noqa: E731
    x = generate(model.G, z, args.batch_size, progress=True, convert=to_pixels, labels=labels)
    if model.is_image:
        save_images(x, model, out, args.nrow, args.force)
    else:
        save_values(x, model, out)
        d = model.cfg.dataset
        if d.name in MIXTURES:
            stats = metrics.mode_stats(x.numpy(), mixture_modes(d), d.std)
            print(
                f"modes {stats['modes_covered']}/{stats['modes_total']}  "
                f"high_quality {stats['high_quality_share']:.3f}  (within {metrics.MODE_STDS:g} std of a mode)"
            )
        else:
            stats = moments(x.numpy())
            print("  ".join(f"{k} {v:.4f}" for k, v in stats.items()) + f"  (target mean {d.mean:g}, std {d.std:g})")
    if args.save_latents:
        atomic_write(Path(args.save_latents), lambda f: torch.save(z, f))
    print(f"ganctl: wrote {args.n} samples to {out}" + (" (EMA generator)" if model.ema else ""))
