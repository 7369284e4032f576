"""ganctl interpolate: walk the latent space between chosen or random points and render the frames."""

from __future__ import annotations

from pathlib import Path

import torch

from ganctl import images, kinds
from ganctl.commands import options, project
from ganctl.commands.options import add_class_option, claim_output, output_kind
from ganctl.config import RunConfig
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.files import atomic_write, write_folder
from ganctl.folder import EXTENSIONS
from ganctl.generation import generate, seeded
from ganctl.training.checkpoint import LoadedGenerator

MODES = ("slerp", "lerp")
OUTPUTS = (".png", ".gif", ".pt", "folder")


def default_mode(cfg: RunConfig) -> str:
    """slerp for Gaussian latents, lerp for uniform ones.

    A d-dimensional N(0, I) latent lies, with overwhelming probability, near the sphere of radius
    sqrt(d) (|z|^2 is chi-squared with mean d and spread sqrt(2d)). The straight line between two
    such points cuts through the inside of that shell: for two independent latents the midpoint
    has norm about sqrt(d/2), a radius where G saw essentially no training latents, so the middle
    frames of a lerp are washed out or off-distribution. slerp follows the great circle and keeps
    the norm near sqrt(d) (White 2016, "Sampling Generative Networks"). Uniform latents fill the
    cube [0, 1)^d, which is convex: every lerp point is a latent G was trained on, while a slerp
    path can leave the cube.
    """
    return "lerp" if cfg.model.latent == "uniform" else "slerp"


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a, b: (..., d); t: (F,) -> (..., F, d), the straight line (1 - t) a + t b; exact at t = 0 and 1."""
    a, b, t = a.unsqueeze(-2), b.unsqueeze(-2), t.to(a.dtype).unsqueeze(-1)
    return (1 - t) * a + t * b  # not a + t (b - a), which misses b by a rounding error at t = 1


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a, b: (..., d); t: (F,) -> (..., F, d), spherical interpolation; exact at t = 0 and 1.

    Falls back to lerp where the angle is undefined or degenerate: a zero latent, or a and b
    (anti)parallel, where sin(omega) ~ 0 would divide by zero.
    """
    dtype = a.dtype
    a64, b64, t64 = a.double(), b.double(), t.double()
    na, nb = a64.norm(dim=-1, keepdim=True), b64.norm(dim=-1, keepdim=True)
    cos = ((a64 * b64).sum(-1, keepdim=True) / (na * nb).clamp_min(1e-300)).clamp(-1.0, 1.0)
    omega = torch.acos(cos).unsqueeze(-2)  # (..., 1, 1)
    sin_omega = torch.sin(omega)
    tt = t64.view(-1, 1)  # (F, 1)
    safe = sin_omega.clamp_min(1e-12)
    path = (torch.sin((1 - tt) * omega) / safe) * a64.unsqueeze(-2) + (torch.sin(tt * omega) / safe) * b64.unsqueeze(-2)
    degenerate = (sin_omega < 1e-6) | (na.unsqueeze(-2) < 1e-12) | (nb.unsqueeze(-2) < 1e-12)
    path = torch.where(degenerate, lerp(a64, b64, t64), path)
    return path.to(dtype)


def latent_path(points: torch.Tensor, steps: int, mode: str, closed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """points (R, M, d) -> latents (R, F, d) and each frame's position along the path (F,).

    Open (M = 2): `steps` frames from the first point to the second, both included; positions 0..1.
    Closed: the tour p0 -> p1 -> ... -> p(M-1) -> p0 with `steps` frames per leg, the frame at each
    waypoint shared by its two legs and the final return to p0 left out, so a looping animation
    shows no repeated frame: M * (steps - 1) frames; position k is waypoint k.
    """
    blend = slerp if mode == "slerp" else lerp
    t = torch.arange(steps, dtype=torch.float64) / (steps - 1)  # exactly 0 and 1 at the ends
    if not closed:
        return blend(points[:, 0], points[:, 1], t), t
    m = points.shape[1]
    legs = [blend(points[:, k], points[:, (k + 1) % m], t[:-1]) for k in range(m)]
    positions = torch.cat([k + t[:-1] for k in range(m)])
    return torch.cat(legs, dim=1), positions


def choose_points(args, cfg: RunConfig) -> tuple[torch.Tensor, str]:
    """The path's points (R, M, z_dim) and a few words saying where they came from."""
    m = args.waypoints or 2
    if args.from_file is not None:
        z = options.load_latents(args.from_file, cfg.model.z_dim, "--from")
        if args.index is None and len(z) < m:
            raise ConfigError(
                f"--from {args.from_file} holds {len(z)} latent(s) but the path needs {m}; "
                f"accepted: a file of >= {m} latents, or --index to pick rows"
            )
        index = args.index if args.index is not None else list(range(m))
        bad = [i for i in index if not 0 <= i < len(z)]
        if bad:
            raise ConfigError(
                f"--index {bad[0]} is out of range for {args.from_file} ({len(z)} latents); accepted: 0..{len(z) - 1}"
            )
        return z[index].unsqueeze(0), f"rows {', '.join(map(str, index))} of {args.from_file}"
    if args.from_seed is not None:
        a, b = (
            seeded(1, cfg.model, args.from_seed, args.truncation),
            seeded(1, cfg.model, args.to_seed, args.truncation),
        )
        return torch.stack([a[0], b[0]]).unsqueeze(0), f"seed {args.from_seed} -> seed {args.to_seed}"
    z = seeded(args.rows * m, cfg.model, args.seed, args.truncation)
    truncated = "" if args.truncation is None else f", truncation {args.truncation:g}"
    return z.view(args.rows, m, -1), f"random points, seed {args.seed}{truncated}"


def projected_points(args, model: LoadedGenerator) -> tuple[torch.Tensor, str, int | None]:
    """The latents of --from and --to images (1, 2, z_dim), where they came from, and their one class."""
    targets = project.read_images([args.from_file, args.to_file], model)
    found = project.project_images(
        model, targets, args.class_, args.restarts, args.project_steps, args.seed, one_class=True
    )
    label = None if found.labels is None else int(found.labels[0])
    origin = f"projections of {args.from_file} ({found.psnr[0]:.1f} dB) -> {args.to_file} ({found.psnr[1]:.1f} dB)"
    return found.z.unsqueeze(0), origin + ("" if label is None else f", class {model.classes[label]}"), label


def check_images(args) -> None:
    """--from A.png --to B.png: two images to project, nothing that picks latents another way."""
    if args.to_file is None:
        raise ConfigError(
            f"--from {args.from_file} is an image and needs --to B.png; accepted: --from A.png --to B.png"
        )
    if args.index is not None or args.waypoints is not None:
        raise ConfigError("--index and --waypoints pick rows of a latent file; accepted: --from A.png --to B.png alone")
    project.check_projection_options(args, "--project-steps")


def check_args(args) -> None:
    """Numbers in range and endpoint options that fit together, before any model is loaded."""
    if args.steps < 2:
        raise ConfigError(
            f"--steps {args.steps} is invalid; accepted: an integer >= 2 (frames from one point "
            "to the next, both ends included)"
        )
    if args.rows < 1:
        raise ConfigError(f"--rows {args.rows} is invalid; accepted: an integer >= 1")
    if args.waypoints is not None and args.waypoints < 2:
        raise ConfigError(f"--waypoints {args.waypoints} is invalid; accepted: an integer >= 2")
    if not 0 < args.fps <= 50:
        raise ConfigError(f"--fps {args.fps:g} is invalid; accepted: a number in (0, 50] (GIF delays are 10 ms steps)")
    options.at_least("--batch-size", args.batch_size, 1)
    if not 1 <= args.zoom <= 16:
        raise ConfigError(f"--zoom {args.zoom} is invalid; accepted: an integer in 1..16")
    given = [name for name, value in (("--from", args.from_file), ("--from-seed", args.from_seed)) if value is not None]
    if len(given) > 1:
        raise ConfigError("--from and --from-seed both given; accepted: one way to choose the endpoints")
    if (args.from_seed is None) != (args.to_seed is None):
        raise ConfigError("--from-seed and --to-seed go together; accepted: --from-seed A --to-seed B")
    if args.from_seed is not None and args.from_seed == args.to_seed:
        raise ConfigError(
            f"--from-seed {args.from_seed} --to-seed {args.to_seed} is one latent, no path; "
            "accepted: two different seeds"
        )
    options.check_truncation(args)
    if args.from_file is not None and Path(args.from_file).suffix.lower() in EXTENSIONS:
        check_images(args)
    elif args.to_file is not None:
        raise ConfigError(f"--to {args.to_file} goes with an image --from; accepted: --from A.png --to B.png")
    if args.truncation is not None and args.from_file is not None:
        raise ConfigError(
            "--truncation redraws random latents and --from gives the latents; accepted: one of them "
            "(ganctl sample --truncation T --save-latents z.pt draws truncated ones to walk between)"
        )
    if args.from_seed is not None and args.waypoints is not None:
        raise ConfigError(
            "--waypoints with --from-seed is not supported; accepted: --waypoints M with random "
            "points (--seed) or with --from z.pt --index I1 ... IM"
        )
    if args.index is not None:
        if args.from_file is None:
            raise ConfigError("--index picks rows of a --from file; accepted: --from z.pt --index I J")
        want = args.waypoints or 2
        if len(args.index) != want:
            accepted = f"{want} rows for --waypoints {want}" if args.waypoints else "two rows, --index I J"
            raise ConfigError(
                f"--index {' '.join(map(str, args.index))} gives {len(args.index)} rows; accepted: {accepted}"
            )
        if len(set(args.index)) != len(args.index):
            raise ConfigError(f"--index {' '.join(map(str, args.index))} repeats a row; accepted: distinct rows")
    if given and args.rows != 1:
        raise ConfigError(f"--rows {args.rows} needs random points; {given[0]} gives one path, accepted: --rows 1")


def render(
    x: torch.Tensor,
    positions: torch.Tensor,
    points: torch.Tensor,
    model: LoadedGenerator,
    out: Path,
    mode: str,
    fps: float,
    zoom: int,
    force: bool,
) -> int:
    """Write G's outputs (R, F, ...) to `out` by its kind; returns the number of frames."""
    kind = output_kind(out)
    rows, frames = x.shape[:2]
    if kind == ".pt":
        atomic_write(out, lambda f: torch.save(x, f))
        return frames
    walk = kinds.Walk(positions, points, mode)
    pictures = kinds.of(model.cfg.dataset).walk(x, model.cfg.dataset, walk, frames=kind != ".png")
    pictures = [images.zoomed(p, zoom) for p in pictures]
    if kind == ".png":
        images.save_png(pictures[0], out)
        return frames
    if kind == ".gif":
        images.save_gif(pictures, out, round(1000 / fps))
    else:
        width = max(3, len(str(frames - 1)))
        files = {f"frame_{i:0{width}d}.png": (lambda f, img=img: img.save(f, "PNG")) for i, img in enumerate(pictures)}
        write_folder(out, files, force)
    return frames


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="ganctl interpolate", description="Walk a trained generator's latent space and render the frames."
    )
    options.add_checkpoint(p)
    p.add_argument(
        "-o",
        "--output",
        default="interpolation.png",
        help=".png (one row per path, one column per frame), .gif (animated, loops), .pt (raw "
        "rows x frames x sample tensor) or a folder of frame_000.png ... (default interpolation.png)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="slerp (default for Gaussian latents: keeps |z| near sqrt(z_dim), where G was trained) "
        "or lerp (default for uniform latents)",
    )
    p.add_argument(
        "--steps", type=int, default=8, help="frames from one point to the next, both included (>= 2; default 8)"
    )
    p.add_argument("--rows", type=int, default=1, help="independent random paths, one row each (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random points (default 0)")
    p.add_argument(
        "--from-seed",
        type=int,
        default=None,
        metavar="A",
        help="start at the latent of ganctl sample --seed A -n 1 (with --to-seed B)",
    )
    p.add_argument(
        "--to-seed", type=int, default=None, metavar="B", help="end at the latent of ganctl sample --seed B -n 1"
    )
    p.add_argument(
        "--from",
        dest="from_file",
        default=None,
        metavar="Z.pt",
        help="latents saved by ganctl sample --save-latents Z.pt (pick rows with --index), or an image "
        "A.png to project, with --to B.png",
    )
    p.add_argument("--to", dest="to_file", default=None, metavar="B.png", help="the image to walk to from --from A.png")
    p.add_argument(
        "--index",
        type=int,
        nargs="+",
        default=None,
        metavar="I",
        help="rows of --from to walk between (default 0 1; 0..M-1 with --waypoints M)",
    )
    p.add_argument(
        "--waypoints",
        type=int,
        default=None,
        metavar="M",
        help="a closed tour through M points that returns to the first, for a looping GIF: M x (steps - 1) frames",
    )
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of a .gif (default 10)")
    p.add_argument(
        "--zoom", type=int, default=1, help="enlarge pictures by this integer factor, nearest pixel (default 1)"
    )
    project.add_projection_options(p, "--project-steps")
    options.add_truncation(p)
    options.add_batch_size(p, "latents through G at once (default 500)")
    options.add_device(p)
    add_class_option(p, "row r draws class r")
    options.add_no_ema(p)
    options.add_force(p)
    return p


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    check_args(args)
    out = Path(args.output)
    kind = output_kind(out)
    if kind not in OUTPUTS:
        raise ConfigError(
            f"-o {out}: unknown output type {kind!r}; accepted: {', '.join(OUTPUTS)} (a folder has no suffix)"
        )
    claim_output(out, args.force)
    model = options.load_model(args)
    options.check_truncation(args, model)
    if not kinds.of(model.cfg.dataset).walks and kind != ".pt":
        # Pictures exist for images and the 1-D Gaussian's value plot; a 2-D walk is raw points.
        raise ConfigError(
            f"-o {out}: a {model.cfg.dataset.name} model draws {tuple(model.data_shape)} points; "
            "accepted: -o FILE.pt (the rows x frames x point tensor)"
        )
    mode = args.mode or default_mode(model.cfg)

    label = None
    if args.to_file is not None:
        points, origin, label = projected_points(args, model)
    else:
        points, origin = choose_points(args, model.cfg)
    z, positions = latent_path(points, args.steps, mode, closed=args.waypoints is not None)
    rows, frames = z.shape[:2]
    labels = None
    if args.class_ is not None or model.classes is not None:
        label = model.class_label(args.class_) if args.class_ is not None else label
        # One class per row, held along the path: the walk moves through z only.
        row_labels = torch.full((rows,), label) if label is not None else torch.arange(rows) % len(model.classes)
        labels = row_labels.repeat_interleave(frames)
    x = generate(model.G, z.flatten(0, 1), args.batch_size, progress=True, labels=labels)
    x = x.view(rows, frames, *x.shape[1:])
    render(x, positions, points, model, out, mode, args.fps, args.zoom, args.force)
    print(
        f"ganctl: wrote {rows} x {frames} frames ({mode}, {origin}) to {out}"
        + (" (EMA generator)" if model.ema else "")
    )
