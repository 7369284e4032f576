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

--folder: dataset=folder on 100,000 generated 64x64 image files (--images N; half PNG, half JPEG,
1,000 per subfolder), trained memory-mapped (GANCTL_MMAP=1) with a small dcgan. Its line adds:
  data_mb               the packed uint8 array (N x 3 x 64 x 64) the cache holds
  files_mb, generate_s  the image files on disk, and the time to write them
  build_s, reuse_s      dataset_size() on a cold cache (decoding every file) and again (the folder's
                        listing and stats, then the existing cache): timed inside a child process
  build_rss_mb          peak RSS of the building child: rows stream to disk, none is held
  rss_peak_mb           peak RSS of the memory-mapped training run; rss_in_memory_mb the same run
                        with the array loaded (GANCTL_MMAP=0), for comparison
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


FOLDER_CHILD = """
import sys, time
from ganctl.config import DatasetConfig
from ganctl.data import dataset_size
cfg = DatasetConfig(name="folder", path=sys.argv[1], root=sys.argv[2], resolution=int(sys.argv[3]))
start = time.perf_counter()
n = dataset_size(cfg)
print(n, time.perf_counter() - start)
"""
SIDE = 64
DISTINCT = 400  # encoded once, written over and over: generating 100k files then takes seconds


def distinct_images(count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """(extension, encoded file) pairs of smooth colour blobs on noise, half PNG, half JPEG."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    out = []
    for i in range(count):
        cy, cx = rng.uniform(16, 48, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 200.0)[..., None] * rng.uniform(0.3, 1.0, size=3)
        pixels = (200 * blob + rng.uniform(0, 55, size=(SIDE, SIDE, 3))).astype(np.uint8)
        buf = io.BytesIO()
        fmt = ("PNG", "JPEG")[i % 2]
        Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out.append((fmt.lower().replace("jpeg", "jpg"), buf.getvalue()))
    return out


def write_folder(root: Path, n: int) -> int:
    """n image files under root/000/ ... root/099/, 1,000 to a folder; returns their total bytes."""
    encoded = distinct_images(min(n, DISTINCT))
    total = 0
    for i in range(n):
        ext, data = encoded[i % len(encoded)]
        folder = root / f"{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"{i:06d}.{ext}").write_bytes(data)
        total += len(data)
    return total


def folder_main(args, device: str) -> None:
    n = args.images or (600 if args.smoke else 100_000)
    steps = 10 if args.smoke else 300
    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        tmp = Path(tmp)
        images, root = tmp / "images", tmp / "data"
        common.note(f"writing {n} generated {SIDE}x{SIDE} image files under {images}")
        start = time.perf_counter()
        files_bytes = write_folder(images, n)
        generate_s = time.perf_counter() - start
        env = common.child_env(args)
        child = [sys.executable, "-c", FOLDER_CHILD, str(images), str(root), str(SIDE)]
        common.note("building the cache (decoding every file)")
        build_rss, out = peak_rss_mb(child, env, tmp)
        count, build_s = out.split()[-2:]
        common.note("sizing the folder again (reusing the cache)")
        _, out = peak_rss_mb(child, env, tmp)
        reuse_s = float(out.split()[-1])
        overrides = [
            "dataset=folder",
            f"dataset.path={images}",
            f"dataset.root={root}",
            f"dataset.resolution={SIDE}",
            "model=dcgan",
            "model.width=16",
            "loss=bce",  # as measured before image data got the recipe's hinge loss and R1
            "optim=adam",
            "trainer=default",  # the root config's trainer is the 1-D Gaussian's: 20 D and 20 G updates a step
            "trainer.batch_size=64",
            f"trainer.steps={steps}",
            f"trainer.log_every={min(100, steps)}",
            f"trainer.sample_every={steps}",
            f"trainer.ckpt_every={steps}",
            "trainer.progress=false",
            f"trainer.device={device}",
        ]
        train = [*common.ganctl_command(), "train", *overrides]
        baseline = float("nan")
        if not args.smoke:
            baseline, _ = peak_rss_mb([sys.executable, "-c", "import torch, ganctl.commands.train"], env, tmp)
        common.note(f"training {steps} steps memory-mapped (GANCTL_MMAP=1)")
        mapped, _ = peak_rss_mb([*train, f"hydra.run.dir={tmp / 'run_mapped'}"], {**env, "GANCTL_MMAP": "1"}, tmp)
        common.note(f"training {steps} steps with the array in memory (GANCTL_MMAP=0)")
        resident, _ = peak_rss_mb([*train, f"hydra.run.dir={tmp / 'run_memory'}"], {**env, "GANCTL_MMAP": "0"}, tmp)
    common.emit(
        "memory",
        device,
        {
            "images": int(count),
            "data_mb": int(count) * 3 * SIDE * SIDE / 2**20,
            "files_mb": files_bytes / 2**20,
            "generate_s": generate_s,
            "build_s": float(build_s),
            "reuse_s": reuse_s,
            "build_rss_mb": build_rss,
            "steps": steps,
            "rss_peak_mb": mapped,
            "rss_in_memory_mb": resident,
            "rss_import_mb": baseline,
            "rss_over_import_mb": mapped - baseline,
            "decode_workers": int(os.environ.get("GANCTL_DECODE_WORKERS") or len(os.sched_getaffinity(0))),
        },
    )


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--folder", action="store_true", help="dataset=folder: a generated folder of image files, mapped")
    p.add_argument("--images", type=int, default=None, help="with --folder: files to generate (default 100,000)")
    args = p.parse_args()
    device = common.setup(args)
    if args.folder:
        return folder_main(args, device)
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
