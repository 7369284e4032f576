"""One prepared check of ganctl on a machine with an NVIDIA GPU, sized for a short lease (< 6 min).

    python benchmarks/gpu_check.py              # = make gpu-check
    python benchmarks/gpu_check.py --dry-run    # the same steps on CPU at tiny sizes (~1 min on 2 cores)
    python benchmarks/gpu_check.py --skip memory bce_compile --budget 200

It needs nothing beside the repository: it writes its own data into a temporary folder (MNIST-
shaped digit-like blobs as ROOT/MNIST/raw/t10k-images-idx3-ubyte.gz, and SVHN-shaped colour
blobs as ROOT/SVHN/train_32x32.mat in the real format). Each step runs in its own process group
with its own time limit, cut to what is left of --budget, so a hang or a crash of one step does
not stop the others. Steps, in order:

  versions            torch, CUDA, cuDNN, the GPUs (a child process) and `nvidia-smi`
  pytest_cuda         `pytest -m cuda -q` (tests marked cuda; exit status 5, no such tests, is ok)
  bce_pair            ganctl mnist_bce (batch 64) against the tutorial loop of train_speed.py on the
                      same device, interleaved in one process; the ratio against its floor (20x)
  bce_bf16            ganctl mnist_bce with trainer.precision=bf16
  svhn_eager          setup 003 (svhn_wgan_gp, batch 64, 5 critic updates per step)
  svhn_channels_last  the same with trainer.channels_last=true
  bce_compile         ganctl mnist_bce with trainer.compile=true (the first log interval holds the
                      compilation, so the rate is of the compiled loop)
  memory              benchmarks/memory.py on the device (peak RSS and CUDA memory of a 60k run)
  ddp                 mnist_bce with trainer.devices=2, only with 2 or more GPUs (CPU/gloo in --dry-run)
  fastgan_128, fastgan_256   model=fastgan (width 32, batch 64, precision auto) on a folder of
                      generated images at 128 and 256 px: steps/s and peak CUDA memory of an
                      in-process run (a child); --dry-run: width 2, batch 4 at 32 and 64 px
  fastgan_fit         the largest per-device batch of model=fastgan at 256 px (width 32, precision
                      auto) whose update fits in GPU memory, doubling from 64 (two steps each): the
                      largest trainer.batch_gpu worth setting there; --dry-run: 32 px, width 2, 2-4
  bce_reduce_overhead trainer.compile=true with compile_mode=reduce-overhead (CUDA graphs): last,
                      as it is the slowest to compile; CUDA only

Every ganctl step is a short `ganctl train` run whose rate (steps/s) is read from its metrics.csv
as train_speed.py does: between the first row (after the warm-up interval) and the last.
Progress goes to stdout; summary.json, summary.md and one log per step go to $OUT when it is set,
else to ./gpu_check_out. Exit status 1 when a step failed or ran out of time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
RESULT_TAG = "GPU_CHECK_RESULT "  # a child's last stdout line: this tag, then its results as JSON
BCE_FLOOR = 20.0  # the floor for ganctl / tutorial on a GPU
STEP_NAMES = [
    "versions",
    "pytest_cuda",
    "bce_pair",
    "bce_bf16",
    "svhn_eager",
    "svhn_channels_last",
    "bce_compile",
    "memory",
    "ddp",
    "fastgan_128",
    "fastgan_256",
    "fastgan_fit",
    "bce_reduce_overhead",
]


@dataclass
class Sizes:
    """How long each kind of run is; --dry-run shrinks everything to a few steps."""

    mnist_images: int = 10_000
    svhn_images: int = 2_048
    pair: tuple[int, int, int] = (1000, 200, 3)  # bce_pair: window, warm-up, repeats
    bce_steps: tuple[int, int] = (600, 200)  # ganctl runs: total steps, log interval (= warm-up)
    compile_steps: tuple[int, int] = (600, 200)
    svhn_steps: tuple[int, int] = (300, 100)
    svhn_batch: int = 64
    # fastgan_SIZE: trained side per step name, width, batch, (total steps, log interval)
    fastgan_sides: dict = field(default_factory=lambda: {"fastgan_128": 128, "fastgan_256": 256})
    fastgan: tuple[int, int, int, int] = (32, 64, 300, 100)
    # fastgan_fit: side, width, first and last per-device batch tried (doubling)
    fit: tuple[int, int, int, int] = (256, 32, 64, 4096)
    limits: dict = field(
        default_factory=lambda: {
            "versions": 60,
            "pytest_cuda": 120,
            "bce_pair": 120,
            "bce_bf16": 60,
            "svhn_eager": 60,
            "svhn_channels_last": 60,
            "bce_compile": 150,
            "memory": 120,
            "ddp": 120,
            "fastgan_128": 90,
            "fastgan_256": 120,
            "fastgan_fit": 120,
            "bce_reduce_overhead": 150,
        }
    )


def dry_sizes() -> Sizes:
    s = Sizes(
        mnist_images=1000,
        svhn_images=256,
        pair=(10, 5, 1),
        bce_steps=(4, 2),
        compile_steps=(4, 2),
        svhn_steps=(2, 1),
        svhn_batch=8,
        fastgan_sides={"fastgan_128": 32, "fastgan_256": 64},
        fastgan=(2, 4, 4, 2),
        fit=(32, 2, 2, 4),
    )
    s.limits = {name: 90 for name in STEP_NAMES}
    return s


# --- running one step -------------------------------------------------------------------------


def run_command(name: str, cmd: list[str], limit: float, logs: Path, env: dict) -> dict:
    """Run cmd in its own process group with a time limit; its output goes to logs/NAME.log."""
    start = time.perf_counter()
    log = logs / f"{name}.log"
    with open(log, "w") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=common.REPO, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            # The whole group: ganctl's DDP workers and torch.compile's compile workers too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended between the timeout and the kill
                pass
            proc.wait()
            rc = None
    text = log.read_text(errors="replace")
    return {
        "rc": rc,
        "wall_s": round(time.perf_counter() - start, 1),
        "output": text,
        "status": "timeout" if rc is None else ("ok" if rc == 0 else "failed"),
    }


def child_result(output: str) -> dict:
    """The JSON a child printed after RESULT_TAG (its last such line), or {}."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    return {}


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Check:
    """The steps, the shared data and the results.

    Each step_NAME method returns its result: status (ok, failed, timeout, skipped), wall_s, and
    values and/or a note; run() guards it and records it under NAME.
    """

    def __init__(self, args: argparse.Namespace):
        self.args, self.dry = args, args.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.sizes = dry_sizes() if self.dry else Sizes()
        self.out = Path(args.out or os.environ.get("OUT") or "gpu_check_out").absolute()
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.deadline = time.perf_counter() + args.budget
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.results: dict[str, dict] = {}
        self.info: dict = {}

    # Data --------------------------------------------------------------------------------------
    def make_data(self, tmp: Path) -> None:
        """MNIST-shaped and SVHN-shaped files in torchvision's layout, so no download is needed."""
        start = time.perf_counter()
        self.tmp = tmp
        self.mnist_root = tmp / "data"
        common.write_mnist_idx(self.mnist_root, "test", common.blob_digits(self.sizes.mnist_images))
        common.write_svhn_mat(self.mnist_root, "train", common.fake_svhn(self.sizes.svhn_images))
        self.folder = tmp / "folder"
        common.write_image_folder(self.folder, max(self.sizes.fastgan_sides.values()), n=256)
        say(
            f"data: {self.sizes.mnist_images} MNIST-shaped and {self.sizes.svhn_images} SVHN-shaped images "
            f"in {self.mnist_root} ({time.perf_counter() - start:.1f} s)"
        )

    def mnist(self) -> list[str]:
        return [f"dataset.root={self.mnist_root}", "dataset.split=test", "dataset.download=false"]

    def svhn(self) -> list[str]:
        return [
            f"dataset.root={self.mnist_root}",
            "dataset.split=train",
            "dataset.download=false",
            f"trainer.batch_size={self.sizes.svhn_batch}",
        ]

    # Driver --------------------------------------------------------------------------------------
    def run(self, name: str, limit: float) -> None:
        """One guarded step: its time limit, its exceptions and its result recorded, never raised."""
        left = self.deadline - time.perf_counter()
        if name in self.args.skip:
            self.results[name] = {"status": "skipped", "note": "--skip", "wall_s": 0.0}
            say(f"{name}: skipped (--skip)")
            return
        if left < 15:
            self.results[name] = {"status": "skipped", "note": f"budget spent ({left:.0f} s left)", "wall_s": 0.0}
            say(f"{name}: skipped, {left:.0f} s of the budget left")
            return
        limit = min(limit, left)
        say(f"{name}: start (limit {limit:.0f} s, {left:.0f} s of the budget left)")
        start = time.perf_counter()
        try:
            result = getattr(self, f"step_{name}")(name, limit)
        except Exception as exc:  # a bug or a missing tool in one step must not stop the others
            result = {"status": "failed", "note": f"{type(exc).__name__}: {exc}"}
        result.setdefault("wall_s", round(time.perf_counter() - start, 1))
        result.pop("output", None)
        self.results[name] = result
        values = " ".join(f"{k}={v}" for k, v in result.get("values", {}).items())
        say(
            f"{name}: {result['status']} after {result['wall_s']} s {values}".rstrip()
            + (f" ({result['note']})" if result.get("note") else "")
        )

    def ganctl_run(self, name: str, limit: float, experiment: str, steps: tuple[int, int], extra: list[str]) -> dict:
        """A short `ganctl train` run; its steady steps/s from metrics.csv."""
        total, log_every = steps
        run_dir = self.tmp / "runs" / name
        overrides = common.train_overrides(experiment, total, log_every, self.device, extra)
        result = run_command(
            name,
            [*common.ganctl_command(), "train", *overrides, f"hydra.run.dir={run_dir}"],
            limit,
            self.logs,
            self.env,
        )
        if result["status"] == "ok":
            result["values"] = {
                "steps_per_s": round(common.steady_rate(run_dir / "metrics.csv"), 2),
                "steps": total - log_every,
            }
        else:
            result["note"] = tail(result["output"], 5)
        return result

    # Steps ----------------------------------------------------------------------------------------
    def step_versions(self, name: str, limit: float) -> dict:
        result = run_command(name, [sys.executable, __file__, "--child", "versions"], limit, self.logs, self.env)
        self.info.update(child_result(result["output"]))
        try:
            probe = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
            self.info["nvidia_smi"] = (probe.stdout + probe.stderr).rstrip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.info["nvidia_smi"] = f"not available: {exc}"
        if result["status"] == "ok":
            result["values"] = {k: self.info[k] for k in ("torch", "cuda", "cudnn", "gpus") if k in self.info}
        else:
            result["note"] = tail(result["output"], 5)
        return result

    def step_pytest_cuda(self, name: str, limit: float) -> dict:
        cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests"]
        result = run_command(name, cmd, limit, self.logs, self.env)
        if result["rc"] == 5:  # pytest: no tests collected, i.e. none is marked cuda yet
            result["status"], result["note"] = "ok", "no tests marked cuda"
        lines = result["output"].rstrip().splitlines()
        result["values"] = {"last_line": lines[-1] if lines else ""}
        if result["status"] != "ok":
            result["note"] = tail(result["output"], 10)
        return result

    def step_bce_pair(self, name: str, limit: float) -> dict:
        window, warmup, repeats = self.sizes.pair
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "bce_pair",
            "--device",
            self.device,
            "--data",
            str(self.mnist_root),
            "--window",
            str(window),
            "--warmup",
            str(warmup),
            "--repeats",
            str(repeats),
        ]
        result = run_command(name, cmd, limit, self.logs, self.env)
        values = child_result(result["output"])
        if result["status"] == "ok" and values:
            # The floor is for a GPU; on CPU (--dry-run) the same loops give ~3-4x.
            values["floor"] = BCE_FLOOR
            values["meets_floor"] = None if self.dry else bool(values["ratio"] >= BCE_FLOOR)
            result["values"] = values
        else:
            result["note"] = tail(result["output"], 5)
        return result

    def step_bce_bf16(self, name: str, limit: float) -> dict:
        return self.ganctl_run(
            name, limit, "mnist_bce", self.sizes.bce_steps, self.mnist() + ["trainer.precision=bf16"]
        )

    def step_svhn_eager(self, name: str, limit: float) -> dict:
        return self.ganctl_run(name, limit, "svhn_wgan_gp", self.sizes.svhn_steps, self.svhn())

    def step_svhn_channels_last(self, name: str, limit: float) -> dict:
        return self.ganctl_run(
            name, limit, "svhn_wgan_gp", self.sizes.svhn_steps, self.svhn() + ["trainer.channels_last=true"]
        )

    def step_bce_compile(self, name: str, limit: float) -> dict:
        return self.ganctl_run(
            name, limit, "mnist_bce", self.sizes.compile_steps, self.mnist() + ["trainer.compile=true"]
        )

    def step_bce_reduce_overhead(self, name: str, limit: float) -> dict:
        if self.dry:
            return {"status": "skipped", "note": "CUDA graphs: CUDA only"}
        return self.ganctl_run(
            name,
            limit,
            "mnist_bce",
            self.sizes.compile_steps,
            self.mnist() + ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"],
        )

    def step_memory(self, name: str, limit: float) -> dict:
        cmd = [sys.executable, str(HERE / "memory.py"), "--device", self.device, *(["--smoke"] if self.dry else [])]
        result = run_command(name, cmd, limit, self.logs, self.env)
        for line in result["output"].splitlines():
            if line.startswith("memory "):
                result["values"] = {k: v for k, _, v in (p.partition("=") for p in shlex.split(line)[1:])}
        if result["status"] != "ok":
            result["note"] = tail(result["output"], 5)
        return result

    def step_ddp(self, name: str, limit: float) -> dict:
        gpus = int(self.info.get("device_count", 0))
        if not self.dry and gpus < 2:
            return {"status": "skipped", "note": f"{gpus} GPU(s); DDP needs 2"}
        # The dry run exercises the same path on CPU (gloo), as the suite's distributed tests do.
        return self.ganctl_run(name, limit, "mnist_bce", self.sizes.bce_steps, self.mnist() + ["trainer.devices=2"])

    def child_step(self, name: str, cmd: list[str], limit: float) -> dict:
        """A child process's step: its result line as the values, else the output's tail as the note."""
        result = run_command(name, cmd, limit, self.logs, self.env)
        values = child_result(result["output"])
        if result["status"] == "ok" and values:
            result["values"] = values
        else:
            result["note"] = tail(result["output"], 5)
        return result

    def fastgan_step(self, name: str, limit: float) -> dict:
        width, batch, steps, log_every = self.sizes.fastgan
        cmd = [sys.executable, __file__, "--child", "fastgan", "--device", self.device, "--data", str(self.folder)]
        cmd += ["--side", str(self.sizes.fastgan_sides[name]), "--width", str(width), "--batch", str(batch)]
        cmd += ["--window", str(steps), "--warmup", str(log_every), "--out", str(self.tmp / "runs" / name)]
        return self.child_step(name, cmd, limit)

    step_fastgan_128 = step_fastgan_256 = fastgan_step

    def step_fastgan_fit(self, name: str, limit: float) -> dict:
        side, width, first, last = self.sizes.fit
        cmd = [sys.executable, __file__, "--child", "fit", "--device", self.device, "--data", str(self.folder)]
        cmd += ["--side", str(side), "--width", str(width), "--batch", str(first), "--last", str(last)]
        cmd += ["--out", str(self.tmp / "runs" / name), "--limit", str(limit - 10)]
        return self.child_step(name, cmd, limit)

    # Summary ---------------------------------------------------------------------------------------
    def write_summary(self, total_s: float) -> dict:
        failed = [n for n, r in self.results.items() if r["status"] in ("failed", "timeout")]
        summary = {
            "dry_run": self.dry,
            "device": self.device,
            "total_s": round(total_s, 1),
            "budget_s": self.args.budget,
            "failed": failed,
            "cpu": common.cpu_model(),
            **{k: v for k, v in self.info.items() if k != "nvidia_smi"},
            "steps": self.results,
            "nvidia_smi": self.info.get("nvidia_smi", ""),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        lines = [
            f"# gpu_check {'(dry run, CPU)' if self.dry else ''}".rstrip(),
            "",
            f"- total: {total_s:.0f} s of a {self.args.budget:.0f} s budget; failed: {', '.join(failed) or 'none'}",
            f"- torch {self.info.get('torch', '?')}, CUDA {self.info.get('cuda', '?')}, "
            f"cuDNN {self.info.get('cudnn', '?')}, GPUs: {self.info.get('gpus', '?')}; CPU {common.cpu_model()}",
        ]
        pair = self.results.get("bce_pair", {}).get("values")
        if pair:
            lines.append(
                f"- mnist_bce: ganctl {pair['ganctl']:.1f} steps/s, tutorial {pair['reference']:.1f}: "
                f"**{pair['ratio']:.1f}x** (floor {BCE_FLOOR:.0f}x on a GPU: "
                f"{ {True: 'met', False: 'NOT met', None: 'not applicable on CPU'}[pair['meets_floor']] })"
            )
        lines += ["", "| step | status | wall s | results |", "|---|---|---|---|"]
        for step, r in self.results.items():
            values = ", ".join(f"{k}={v}" for k, v in r.get("values", {}).items())
            note = r.get("note", "").replace("\n", " / ").replace("|", "\\|")
            cell = "; ".join(x for x in (values, note) if x)
            lines.append(f"| {step} | {r['status']} | {r.get('wall_s', '')} | {cell} |")
        lines += ["", "```", summary["nvidia_smi"] or "(no nvidia-smi)", "```", ""]
        (self.out / "summary.md").write_text("\n".join(lines))
        return summary


def say(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- children: the parts that run torch, each in its own process --------------------------------


def child_versions() -> dict:
    import torch

    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": sys.version.split()[0],
    }
    info["gpus"] = [
        f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))}, "
        f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
        for i in range(info["device_count"])
    ]
    return info


def child_bce_pair(args: argparse.Namespace) -> dict:
    """train_speed.py's mnist_bce pair on one device: ganctl, the tutorial loop, the resident loop."""
    import statistics

    import train_speed

    root = Path(args.data)
    images = common.read_mnist_idx(root / common.MNIST_TEST)
    overrides = common.train_overrides(
        "mnist_bce",
        args.warmup + args.window,
        args.warmup,
        args.device,
        [f"dataset.root={root}", "dataset.split=test", "dataset.download=false"],
    )
    reference = train_speed.ReferenceLoop(images, args.device)
    resident = train_speed.ResidentLoop(images, args.device)
    for _ in range(args.warmup):
        reference.step()
        resident.step()
    ours, theirs, plain = [], [], []
    with tempfile.TemporaryDirectory(prefix="ganctl_gpu_check_") as tmp:
        for r in range(args.repeats):
            ours.append(train_speed.ganctl_rate(overrides, Path(tmp) / f"bce_{r}"))
            theirs.append(reference.rate(args.window))
            plain.append(resident.rate(args.window))
            print(
                f"repeat {r + 1}: ganctl {ours[-1]:.1f}, tutorial {theirs[-1]:.1f}, resident {plain[-1]:.1f} steps/s",
                flush=True,
            )
    med = statistics.median
    return {
        "ganctl": round(med(ours), 1),
        "reference": round(med(theirs), 1),
        "resident": round(med(plain), 1),
        "ratio": round(med(ours) / med(theirs), 2),
        "ratio_pair_min": round(min(a / b for a, b in zip(ours, theirs)), 2),
        "ratio_pair_max": round(max(a / b for a, b in zip(ours, theirs)), 2),
        "window": args.window,
        "repeats": args.repeats,
    }


def child_fastgan(args: argparse.Namespace) -> dict:
    """A model=fastgan run in this process (the image recipe's loss, optimiser and trainer), so
    that torch.cuda's peak counters see it: steady steps/s and peak CUDA memory."""
    import torch

    from ganctl.api import compose
    from ganctl.commands.train import run

    side = args.side
    cfg = compose(
        None,
        "dataset=folder",
        f"dataset.path={args.data}",
        f"dataset.root={Path(args.out) / 'data'}",
        f"dataset.resolution={side}",
        "model=fastgan",
        f"model.width={args.width}",
        f"trainer.batch_size={args.batch}",
        "trainer.precision=auto",
        f"trainer.steps={args.window}",
        f"trainer.log_every={args.warmup}",
        f"trainer.sample_every={args.window}",
        f"trainer.ckpt_every={args.window}",
        "trainer.progress=false",
        f"trainer.device={args.device}",
    )
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run(cfg, Path(args.out))
    mb = 2**20
    return {
        "side": side,
        "width": args.width,
        "batch": args.batch,
        "steps_per_s": round(common.steady_rate(Path(args.out) / "metrics.csv"), 2),
        "cuda_peak_alloc_mb": round(torch.cuda.max_memory_allocated() / mb) if cuda else None,
        "cuda_peak_reserved_mb": round(torch.cuda.max_memory_reserved() / mb) if cuda else None,
    }


def child_fit(args: argparse.Namespace) -> dict:
    """The largest per-device batch (so the largest trainer.batch_gpu) whose whole update fits in
    the device's memory: model=fastgan at --side, batches doubling from --batch to --last, two
    steps each, until one runs out of memory or --limit seconds have passed."""
    import torch

    from ganctl.api import compose
    from ganctl.commands.train import run

    start, fits, peak, oom = time.perf_counter(), None, None, None
    batch = args.batch
    while batch <= args.last and time.perf_counter() - start < args.limit:
        cfg = compose(
            None,
            "dataset=folder",
            f"dataset.path={args.data}",
            f"dataset.root={Path(args.out) / 'data'}",
            f"dataset.resolution={args.side}",
            "model=fastgan",
            f"model.width={args.width}",
            f"trainer.batch_size={batch}",
            "trainer.precision=auto",
            "trainer.steps=2",
            "trainer.log_every=1",
            "trainer.sample_every=2",
            "trainer.ckpt_every=2",
            "trainer.progress=false",
            f"trainer.device={args.device}",
        )
        if args.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            run(cfg, Path(args.out) / f"batch_{batch}")
        except torch.OutOfMemoryError:
            oom = batch
            break
        fits = batch
        peak = round(torch.cuda.max_memory_allocated() / 2**20) if args.device == "cuda" else None
        batch *= 2
    return {"side": args.side, "width": args.width, "largest_batch_gpu": fits, "peak_alloc_mb": peak, "first_oom": oom}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="run every step on CPU at tiny sizes")
    p.add_argument("--out", default=None, help="output folder (default: $OUT, else ./gpu_check_out)")
    p.add_argument(
        "--budget",
        type=float,
        default=330.0,
        help="seconds for all steps together; each step's limit is cut to what is left (default 330)",
    )
    p.add_argument("--skip", nargs="+", default=[], choices=STEP_NAMES, help="steps not to run")
    # Internal: a step's child process.
    p.add_argument("--child", choices=["versions", "bce_pair", "fastgan", "fit"], help=argparse.SUPPRESS)
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--window", type=int, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    p.add_argument("--side", type=int, help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--last", type=int, help=argparse.SUPPRESS)
    p.add_argument("--limit", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        children = {"versions": child_versions, "bce_pair": child_bce_pair, "fastgan": child_fastgan, "fit": child_fit}
        values = children[args.child]() if args.child == "versions" else children[args.child](args)
        print(RESULT_TAG + json.dumps(values), flush=True)
        return 0

    start = time.perf_counter()
    check = Check(args)
    say(f"{'dry run on CPU' if check.dry else 'device cuda'}; budget {args.budget:.0f} s; output in {check.out}")
    with tempfile.TemporaryDirectory(prefix="ganctl_gpu_check_") as tmp:
        check.make_data(Path(tmp))
        for name in STEP_NAMES:
            check.run(name, check.sizes.limits[name])
            check.write_summary(time.perf_counter() - start)  # kept current: a lease may end mid-run
    summary = check.write_summary(time.perf_counter() - start)
    say(
        f"done in {summary['total_s']} s; failed: {', '.join(summary['failed']) or 'none'}; "
        f"summary in {check.out / 'summary.md'}"
    )
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
