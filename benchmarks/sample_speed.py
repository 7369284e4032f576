"""Sampling speed: `ganctl sample -n 10000 -o x.npz` end to end and in-process, and a 16x16 interpolation grid.

One result line, `sample_speed key=value ...`:
  n                  samples drawn
  cli_wall_s         wall seconds of `ganctl sample RUN -n N -o x.npz` (a fresh process: imports included)
  cli_samples_per_s  n / cli_wall_s
  cli_n1_wall_s      the same command with -n 1: the fixed cost (interpreter, imports, checkpoint load)
  inproc_samples_per_s   ganctl.commands.sample.main(...) called in this process: the command without start-up
  gen_samples_per_s  G forward alone on the loaded generator, batches of 500 (the sampler's default)
  interp_wall_s      wall seconds of `ganctl interpolate RUN --rows 16 --steps 16 -o grid.png`;
                     nan, with a note on stderr, when ganctl.commands.interpolate cannot be imported
The checkpoint is mnist_bce (G 64-256-256-784) trained for 2 steps on generated images: the speed
of sampling does not depend on how well G is trained.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common


def tiny_run(tmp: Path, device: str) -> Path:
    """A 2-step mnist_bce run on 128 generated images; returns its run folder."""
    from ganctl.cli import compose_run_config
    from ganctl.commands.train import run

    root = tmp / "data"
    common.write_mnist_idx(root, "test", common.fake_digits(128))
    overrides = common.train_overrides("mnist_bce", 2, 1, device, [f"dataset.root={root}", "dataset.split=test"])
    run_dir = tmp / "run"
    run(compose_run_config(overrides), run_dir)
    return run_dir


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    n = 1000 if args.smoke else 10_000
    repeats = 1 if args.smoke else 3
    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        measure(args, device, n, repeats, Path(tmp))


def measure(args, device: str, n: int, repeats: int, tmp: Path) -> None:
    run_dir = tiny_run(tmp, device)
    env = common.child_env(args)
    cli_cmd = common.ganctl_command()

    cli, cli_one = [], []
    for r in range(repeats):
        wall, _ = common.timed_run(
            [*cli_cmd, "sample", str(run_dir), "-n", str(n), "-o", str(tmp / f"cli_{r}.npz"), "--device", device],
            env=env,
        )
        cli.append(wall)
        if args.smoke:
            continue  # one start-up less: the -n 1 run is the same code path
        wall, _ = common.timed_run(
            [*cli_cmd, "sample", str(run_dir), "-n", "1", "-o", str(tmp / f"one_{r}.npz"), "--device", device], env=env
        )
        cli_one.append(wall)

    import torch

    from ganctl.commands import sample

    inproc = []
    for r in range(repeats):
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # its "wrote N samples" line is not a result
            sample.main([str(run_dir), "-n", str(n), "-o", str(tmp / f"inproc_{r}.npz"), "--device", device])
        inproc.append(n / (time.perf_counter() - start))

    from ganctl.training.checkpoint import load_generator

    model = load_generator(str(run_dir), torch.device(device))
    z = torch.randn(n, model.cfg.model.z_dim)
    gen = []
    with torch.no_grad():
        model.G(z[:500].to(device))  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, n, 500):
                model.G(z[i : i + 500].to(device)).cpu()
            gen.append(n / (time.perf_counter() - start))

    interp = float("nan")
    try:
        import ganctl.commands.interpolate  # noqa: F401  (written alongside; may not exist yet)
    except ImportError as exc:
        common.note(f"interpolation skipped: ganctl.commands.interpolate does not import ({exc})")
    else:
        walls = [
            common.timed_run(
                [
                    *cli_cmd,
                    "interpolate",
                    str(run_dir),
                    "--rows",
                    "16",
                    "--steps",
                    "16",
                    "-o",
                    str(tmp / f"grid_{r}.png"),
                    "--device",
                    device,
                ],
                env=env,
            )[0]
            for r in range(repeats)
        ]
        interp = statistics.median(walls)

    cli_wall = statistics.median(cli)
    common.emit(
        "sample_speed",
        device,
        {
            "n": n,
            "cli_wall_s": cli_wall,
            "cli_samples_per_s": n / cli_wall,
            "cli_n1_wall_s": statistics.median(cli_one) if cli_one else float("nan"),
            "inproc_samples_per_s": statistics.median(inproc),
            "gen_samples_per_s": statistics.median(gen),
            "interp_wall_s": interp,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
