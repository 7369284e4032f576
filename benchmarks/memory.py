"""Peak memory of a mnist_bce run on a 60,000-image training set: resident (RSS) and, with CUDA, GPU.

One result line, `memory key=value ...`:
  images, data_mb       the generated training split: N uint8 28x28 images, and their size in MB
  steps                 training steps of the measured run
  rss_peak_mb           peak resident memory of `ganctl train ...` (ru_maxrss of that process, read
                        with os.wait4 by a small launcher, see LAUNCHER), MB = 2**20 bytes
  rss_import_mb         peak resident memory of `python -c "import torch, ganctl.commands.train"`: the floor
                        (nan with --smoke, which skips it)
  rss_over_import_mb    the difference: data, models, optimiser state, Hydra and the loop
  cuda_peak_alloc_mb, cuda_peak_reserved_mb   torch.cuda.max_memory_{allocated,reserved} of the same
                        run done in-process in a child (nan without CUDA)
The images are generated (MNIST-like: 80% zero pixels) and written in MNIST's IDX format, gzip,
to a temporary ROOT/MNIST/raw/train-images-idx3-ubyte.gz, so the real 60k split is not needed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import common

CUDA_CHILD = """
import sys, torch
from pathlib import Path
from ganctl.cli import compose_run_config
from ganctl.commands.train import run
torch.cuda.reset_peak_memory_stats()
run(compose_run_config(sys.argv[2:]), Path(sys.argv[1]))
print(torch.cuda.max_memory_allocated() / 2**20, torch.cuda.max_memory_reserved() / 2**20)
"""


# Linux counts the memory a child had before exec() in its ru_maxrss, and a child forked from this
# process (torch and the generated images loaded) starts with all of ours. So the measured command
# is started by this small launcher, whose own footprint (~10 MB) is all its child inherits.
LAUNCHER = """
import os, subprocess, sys
with open(sys.argv[1], "w") as out, open(sys.argv[2], "w") as err:
    proc = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def peak_rss_mb(cmd: list[str], env: dict, logs: Path) -> tuple[float, str]:
    """(peak RSS of the command in MB, its stdout); exits with its output if it fails."""
    out, err = logs / "stdout", logs / "stderr"
    launcher = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(out), str(err), *cmd], env=env, capture_output=True, text=True
    )
    maxrss_kb, returncode = (int(v) for v in launcher.stdout.split()) if launcher.returncode == 0 else (0, -1)
    stdout = out.read_text() if out.exists() else ""
    if returncode != 0:
        stderr = (err.read_text() if err.exists() else "") + launcher.stderr
        sys.exit(f"benchmarks: {' '.join(cmd)} failed with exit status {returncode}:\n{stdout[-2000:]}{stderr[-4000:]}")
    return maxrss_kb / 1024, stdout  # Linux reports kilobytes


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    n, steps = (2_000, 10) if args.smoke else (60_000, 300)
    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        tmp = Path(tmp)
        common.note(f"writing {n} generated images as ROOT/MNIST/raw/train-images-idx3-ubyte.gz")
        common.write_mnist_idx(tmp / "data", "train", common.fake_digits(n))
        env = common.child_env(args)
        overrides = common.train_overrides(
            "mnist_bce", steps, min(100, steps), device, [f"dataset.root={tmp / 'data'}", "dataset.split=train"]
        )
        baseline = float("nan")
        if not args.smoke:  # one interpreter start-up less in the smoke test
            baseline, _ = peak_rss_mb([sys.executable, "-c", "import torch, ganctl.commands.train"], env, tmp)
        train, _ = peak_rss_mb(
            [*common.ganctl_command(), "train", *overrides, f"hydra.run.dir={tmp / 'run'}"], env, tmp
        )
        cuda_alloc = cuda_reserved = float("nan")
        if device.startswith("cuda"):
            _, out = peak_rss_mb([sys.executable, "-c", CUDA_CHILD, str(tmp / "run_cuda"), *overrides], env, tmp)
            cuda_alloc, cuda_reserved = (float(v) for v in out.split()[-2:])
    common.emit(
        "memory",
        device,
        {
            "images": n,
            "data_mb": n * 28 * 28 / 2**20,
            "steps": steps,
            "rss_peak_mb": train,
            "rss_import_mb": baseline,
            "rss_over_import_mb": train - baseline,
            "cuda_peak_alloc_mb": cuda_alloc,
            "cuda_peak_reserved_mb": cuda_reserved,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
