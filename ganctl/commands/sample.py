"""ganctl sample: draw samples from a trained generator into a grid, files, .npz, .pt or stats."""

from __future__ import annotations

from pathlib import Path

import torch

from ganctl import images, kinds
from ganctl.commands import options
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.files import atomic_write
from ganctl.generation import class_columns, generate, seeded


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="ganctl sample", description="Draw samples from a trained generator.")
    options.add_checkpoint(p)
    p.add_argument("-n", type=int, default=None, help="number of samples (default 64)")
    p.add_argument(
        "-o",
        "--output",
        default="samples.png",
        help="images: .png grid, .npz (uint8 arr_0), .pt (raw tensor) or a folder of PNGs; "
        "1-D: .png histogram, .npy, .csv or .pt; 2-D: .png scatter, .npy/.csv/.pt of N x 2 points "
        "(default samples.png)",
    )
    p.add_argument("--seed", type=int, default=0, help="latent seed; the same seed gives the same samples")
    options.add_batch_size(p, "samples generated at once (default 500)")
    options.add_device(p)
    p.add_argument("--nrow", type=int, default=None, help="images per row of a .png grid (default sqrt(n))")
    options.add_truncation(p)
    p.add_argument(
        "--save-latents", default=None, metavar="Z.pt", help="also save the latents, e.g. for ganctl interpolate --from"
    )
    p.add_argument(
        "--latents",
        default=None,
        metavar="Z.pt",
        help="draw G of these N x z_dim latents (from --save-latents or ganctl project) instead of random ones",
    )
    options.add_class_option(p, "every class, each in whole grid rows")
    options.add_no_ema(p)
    options.add_force(p)
    return p


def check_args(args) -> None:
    options.at_least("-n", args.n, 1, "a number of samples")
    options.at_least("--batch-size", args.batch_size, 1)
    options.at_least("--nrow", args.nrow, 1)
    options.check_truncation(args)
    for flag, value in (("-n", args.n), ("--truncation", args.truncation)):
        if args.latents is not None and value is not None:
            raise ConfigError(f"--latents gives the latents and {flag} asks for random ones; accepted: one of them")


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    check_args(args)
    model = options.load_model(args)
    kind = kinds.of(model.cfg.dataset)
    out = Path(args.output)
    out_kind = options.output_kind(out)
    if out_kind not in kind.outputs:
        raise ConfigError(
            f"-o {out}: unknown output type {out_kind!r} for this model; accepted: {', '.join(kind.outputs)}"
        )
    options.check_truncation(args, model)
    if args.latents is not None:
        z = options.load_latents(args.latents, model.cfg.model.z_dim, "--latents")
        args.n = len(z)
    else:
        args.n = args.n or 64
        z = seeded(args.n, model.cfg.model, args.seed, args.truncation)
    labels = options.asked_labels(model, args.n, args.class_)
    if labels is not None and args.class_ is None and args.nrow is None:
        args.nrow = class_columns(args.n, len(model.classes))
    options.claim_output(out, args.force)
    if args.save_latents:
        options.claim_output(Path(args.save_latents), args.force)

    to_pixels = None
    if kind.pixels and out_kind != ".pt":
        to_pixels = lambda batch: images.to_uint8(batch, model.cfg.dataset.range)  # noqa: E731
    x = generate(model.G, z, args.batch_size, progress=True, convert=to_pixels, labels=labels)
    kind.write(x, model.cfg.dataset, out, out_kind, args.nrow, args.force)
    summary = kind.summary(x, model.cfg.dataset)
    if summary:
        print(summary)
    if args.save_latents:
        atomic_write(Path(args.save_latents), lambda f: torch.save(z, f))
    print(f"ganctl: wrote {args.n} samples to {out}" + (" (EMA generator)" if model.ema else ""))
