"""ganctl project: find the latent (and class) whose generated image matches each given image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ganctl import folder, images, kinds, projection
from ganctl.commands import options
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.files import write_folder
from ganctl.training.checkpoint import LoadedGenerator, load_discriminator

RESERVED = {"latents", "projection"}  # the folder's shared files: latents.pt, projection.json


def add_projection_options(p: ArgumentParser, steps_flag: str = "--steps") -> None:
    """The search's options; `ganctl interpolate` names its step count --project-steps (its --steps are frames)."""
    p.add_argument(
        "--restarts", type=int, default=projection.RESTARTS, help=f"searches per image (default {projection.RESTARTS})"
    )
    p.add_argument(
        steps_flag,
        dest="project_steps",
        type=int,
        default=projection.STEPS,
        help=f"Adam steps of each search (default {projection.STEPS})",
    )


def check_projection_options(args, steps_flag: str = "--steps") -> None:
    options.at_least("--restarts", args.restarts, 1)
    options.at_least(steps_flag, args.project_steps, 1)


def read_images(paths: list[str], model: LoadedGenerator) -> torch.Tensor:
    """The files as N x C x H x W in the data's range, resized and converted as dataset=folder does."""
    if not kinds.of(model.cfg.dataset).pixels:
        raise ConfigError(
            f"a {model.cfg.dataset.name} model draws {tuple(model.data_shape)} points, not images; "
            "accepted: a generator trained on images"
        )
    channels, res = model.data_shape[0], model.data_shape[-1]
    pixels = np.stack([folder.load_image(p, res, channels) for p in paths])
    return images.from_uint8(torch.from_numpy(pixels), model.cfg.dataset.range)


def project_images(
    model: LoadedGenerator, targets: torch.Tensor, class_, restarts: int, steps: int, seed: int, one_class: bool = False
) -> projection.Projected:
    """Each target's latent (and class): `class_` when given, else the best class (one for all with `one_class`)."""
    label = None if class_ is None else model.class_label(class_)
    labels = None if label is None else torch.full((len(targets),), label)
    features = projection.discriminator_features(load_discriminator(model))
    return projection.project(
        model.G,
        targets,
        model.cfg.model,
        tuple(model.cfg.dataset.range),
        features,
        labels=labels,
        n_classes=len(model.classes) if model.classes is not None and labels is None else None,
        restarts=restarts,
        steps=steps,
        seed=seed,
        one_class=one_class,
    )


def file_names(paths: list[str]) -> list[str]:
    """A distinct output name per image, from its file name (a.png, b/a.png -> a, a_2)."""
    taken, names = set(RESERVED), []
    for p in paths:
        stem, name, k = Path(p).stem or "image", Path(p).stem or "image", 1
        while name in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name)
        names.append(name)
    return names


def side_by_side(target: torch.Tensor, x: torch.Tensor, value_range, zoom: int):
    """target | reconstruction | |difference| as one picture, nearest-pixel zoomed."""
    t, r = images.to_uint8(target, value_range), images.to_uint8(x, value_range)
    diff = (t.short() - r.short()).abs().to(torch.uint8)
    return images.zoomed(images.grid(torch.stack([t, r, diff]), nrow=3), zoom)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="ganctl project",
        description="Find the latent (and class) whose generated image matches each image; write the latents "
        "and target | reconstruction | difference pictures.",
    )
    options.add_checkpoint(p)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG, JPEG, WebP, BMP or GIF files, any size or mode")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="a new folder for NAME.pt, NAME.npy, NAME.png per image"
    )
    add_projection_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the searches' starting latents (default 0)")
    p.add_argument("--zoom", type=int, default=4, help="enlarge the pictures by this integer factor (default 4)")
    options.add_class_option(p, "the best-matching class, found by trying each")
    options.add_device(p)
    options.add_no_ema(p)
    options.add_force(p)
    return p


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    if not args.images:
        raise ConfigError("ganctl project: no images given; accepted: one or more image files after the run")
    check_projection_options(args)
    if not 1 <= args.zoom <= 16:
        raise ConfigError(f"--zoom {args.zoom} is invalid; accepted: an integer in 1..16")
    out = Path(args.output)
    options.claim_output(out, args.force)
    model = options.load_model(args)
    targets = read_images(args.images, model)
    found = project_images(model, targets, args.class_, args.restarts, args.project_steps, args.seed)
    value_range = model.cfg.dataset.range
    names = file_names(args.images)
    files, records = {"latents.pt": lambda f: torch.save(found.z.clone(), f)}, []
    for i, (path, name) in enumerate(zip(args.images, names)):
        z = found.z[i : i + 1].clone()  # 1 x z_dim: the shape ganctl sample --latents and interpolate --from read
        picture = side_by_side(targets[i], found.x[i], value_range, args.zoom)
        files[f"{name}.pt"] = lambda f, z=z: torch.save(z, f)
        files[f"{name}.npy"] = lambda f, z=z: np.save(f, z.numpy())
        files[f"{name}.png"] = lambda f, picture=picture: picture.save(f, "PNG")
        label = None if found.labels is None else int(found.labels[i])
        records.append(
            {
                "image": path,
                "latent": f"{name}.pt",
                "row": i,
                "class": None if label is None else model.classes[label],
                "psnr_db": round(float(found.psnr[i]), 3),
                "feature_distance": round(float(found.feature_distance[i]), 4),
            }
        )
    summary = json.dumps({"checkpoint": str(model.path), "ema": model.ema, "images": records}, indent=1)
    files["projection.json"] = lambda f: f.write(summary.encode())
    write_folder(out, files, args.force)
    for r, name in zip(records, names):
        klass = "" if r["class"] is None else f", class {r['class']}"
        print(
            f"{r['image']}: PSNR {r['psnr_db']:.2f} dB, feature distance {r['feature_distance']:.3f}{klass} "
            f"-> {out / name}.pt, .npy, .png"
        )
    print(f"ganctl: wrote {len(records)} projections to {out}" + (" (EMA generator)" if model.ema else ""))
