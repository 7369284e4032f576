"""The options and checks that several subcommands share: the checkpoint, --device, --no-ema,
--batch-size, --class, --force and the output file."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ganctl.devices import resolve_device
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.generation import class_labels
from ganctl.training.checkpoint import LoadedGenerator, load_generator

LATENTS_HINT = (
    "accepted: an N x z_dim tensor saved by ganctl sample --save-latents z.pt or ganctl project (DIR/latents.pt)"
)
CHECKPOINT_HELP = "a .pt checkpoint, or a run folder (its checkpoints/last.pt)"


def add_checkpoint(p: ArgumentParser, help: str = CHECKPOINT_HELP) -> None:
    p.add_argument("checkpoint", help=help)


def add_device(p: ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")


def add_no_ema(p: ArgumentParser, what: str = "use") -> None:
    p.add_argument("--no-ema", action="store_true", help=f"{what} the raw generator even if EMA weights exist")


def add_batch_size(p: ArgumentParser, help: str) -> None:
    p.add_argument("--batch-size", type=int, default=500, help=help)


def add_force(p: ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def add_class_option(p: ArgumentParser, default: str) -> None:
    """--class C: a conditional generator's class by index or name (LoadedGenerator.class_label checks it)."""
    p.add_argument(
        "--class",
        dest="class_",
        default=None,
        metavar="C",
        help=f"a conditional generator's class, by index or name (default: {default})",
    )


def add_truncation(p: ArgumentParser) -> None:
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="T",
        help="redraw Gaussian latent entries with |z| > T (the truncation trick: less variety, each sample "
        "closer to the typical one)",
    )


def check_truncation(args, model: LoadedGenerator | None = None) -> None:
    """--truncation is a number > 0 (checked before a model loads) for Gaussian latents (once one has)."""
    if args.truncation is None:
        return
    if not args.truncation > 0:
        raise ConfigError(f"--truncation {args.truncation} is invalid; accepted: a number > 0")
    if model is not None and model.cfg.model.latent != "normal":
        raise ConfigError("--truncation applies to Gaussian latents; this model was trained on uniform ones")


def at_least(flag: str, value: int | None, low: int, what: str = "an integer") -> None:
    """`flag value is invalid; accepted: <what> >= low` unless value >= low (None: not given)."""
    if value is not None and value < low:
        raise ConfigError(f"{flag} {value} is invalid; accepted: {what} >= {low}")


def load_model(args, target: str | None = None) -> LoadedGenerator:
    """The generator named by the checkpoint argument, on --device, G_ema unless --no-ema."""
    device = resolve_device(args.device, key="--device")
    return load_generator(target or args.checkpoint, device, use_ema=not args.no_ema)


def asked_labels(model: LoadedGenerator, n: int, class_: int | str | None) -> torch.Tensor | None:
    """Labels for n samples of a conditional generator: the class asked for, else every class in
    equal blocks; None for an unconditional generator (which refuses a class in one line)."""
    if class_ is None and model.classes is None:
        return None
    label = None if class_ is None else model.class_label(class_)
    return class_labels(n, len(model.classes), label)


def output_kind(out: Path) -> str:
    return "folder" if out.suffix == "" or out.is_dir() else out.suffix.lower()


def claim_output(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ConfigError(f"output {out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist; create it first")


def load_latents(path: str, z_dim: int, flag: str) -> torch.Tensor:
    """The N x z_dim latents of `ganctl sample --save-latents` or `ganctl project`, checked, on the CPU."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag} {p} does not exist; {LATENTS_HINT}")
    try:
        z = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ConfigError(f"{flag} {p} is not a readable tensor file ({reason}); {LATENTS_HINT}") from None
    if isinstance(z, torch.Tensor) and z.dim() == 1 and z_dim == 1:
        z = z.unsqueeze(1)  # a plain list of scalar latents for a z_dim=1 model
    if not isinstance(z, torch.Tensor):
        raise ConfigError(f"{flag} {p} holds a {type(z).__name__}, not a latent tensor; {LATENTS_HINT}")
    if z.dim() != 2 or not z.is_floating_point() or z.shape[1] != z_dim:
        shape = " x ".join(map(str, z.shape)) or "scalar"
        raise ConfigError(
            f"{flag} {p} holds a {shape} {str(z.dtype).replace('torch.', '')} tensor but this "
            f"generator takes N x {z_dim} float latents; {LATENTS_HINT}"
        )
    if not torch.isfinite(z).all():
        raise ConfigError(f"{flag} {p} holds non-finite latents; {LATENTS_HINT}")
    return z.float()
