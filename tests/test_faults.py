"""Fault injection: SIGKILL at random moments, refused writes, two processes on one folder, a re-run
over a finished run, an interrupted sweep. Real faults on the real command; nothing of ganctl is mocked.

Starting `python -m ganctl` costs 3-4 s on the 2-core CI machine (importing torch, then
torch._dynamo when the first optimiser is built), so twenty kills in a row would take minutes.
Most runs here start from a fork server instead: one Python process imports ganctl once, then
forks a child per command, and the child runs `ganctl.cli.main(args)`, which is all that
`python -m ganctl` runs. Each child is a process of its own with its own PID: the test kills it
with SIGKILL, gives it a file-size limit or waits for its exit status like any other process.
The full-disk test, which needs a private mount namespace, starts `python -m ganctl` itself.
"""

from __future__ import annotations

import csv
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganctl.commands.train import run
from ganctl.training import checkpoint

from conftest import REPO, compose

# The default config (setup 002's 1-D Gaussian GAN, no download) cut short, on the CPU.
BASE = ["trainer.device=cpu", "trainer.progress=false"]
SMALL = [*BASE, "dataset.samples_per_epoch=1000"]  # 65 KB checkpoints

SERVER = r"""
import json, os, resource, sys
import torch
import ganctl.cli, ganctl.commands.train, ganctl.commands.sample, ganctl.commands.evaluate
import hydra._internal.utils, hydra.core.utils
from hydra.core.override_parser.overrides_parser import OverridesParser

OverridesParser.create()
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # imports torch._dynamo here, once
print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if "wait" in req:
        _, status = os.waitpid(req["wait"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
        continue
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        print(json.dumps({"pid": pid}), flush=True)
        continue
    try:
        os.chdir(req["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, suffix in ((1, ".out"), (2, ".err")):
            f = os.open(req["log"] + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        if req.get("fsize"):
            resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
        code = 0
        ganctl.cli.main(req["args"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
"""


class Result:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


class Child:
    def __init__(self, server: "ForkServer", pid: int, log: Path):
        self.server, self.pid, self.log = server, pid, log

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> str:
        """Kill it and return what it said: the message of a failed wait_for."""
        try:
            self.kill()
        except ProcessLookupError:
            pass
        result = self.wait()
        return f"exit {result.returncode}: {result.stderr}"

    def wait(self, timeout: float = 120) -> Result:
        code = self.server.request({"wait": self.pid}, timeout)["code"]
        out = Path(f"{self.log}.out").read_text()
        err = Path(f"{self.log}.err").read_text()
        return Result(code, out, err)


class ForkServer:
    """Starts `ganctl ARGS` as forked children of one process that has imported ganctl already."""

    def __init__(self, logs: Path):
        self.logs, self.count = logs, 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.reply(120)

    def reply(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("the fork server did not answer")
        return json.loads(self.proc.stdout.readline())

    def request(self, req: dict, timeout: float = 60) -> dict:
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        return self.reply(timeout)

    def start(self, *args: str, cwd: Path = REPO, fsize: int | None = None) -> Child:
        self.count += 1
        log = self.logs / f"run{self.count}"
        pid = self.request({"args": list(args), "cwd": str(cwd), "log": str(log), "fsize": fsize})["pid"]
        return Child(self, pid, log)

    def run(self, *args: str, cwd: Path = REPO, fsize: int | None = None, timeout: float = 120) -> Result:
        return self.start(*args, cwd=cwd, fsize=fsize).wait(timeout)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def ganctl(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("logs"))
    yield server
    server.close()


def one_error_line(result: Result, code: int, *needles: str) -> str:
    """The command failed with `code` and said why in one line, without a traceback."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "%|" not in ln]  # not progress bars
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("ganctl: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def temporaries(run_dir: Path) -> list[Path]:
    return [
        p
        for sub in (run_dir, run_dir / "checkpoints", run_dir / "samples")
        if sub.is_dir()
        for p in sub.iterdir()
        if ".tmp" in p.name
    ]


def step_of(path: Path) -> int:
    return checkpoint.load(path)["step"] if path.exists() else -1


def inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return -1


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def assert_same_training_state(a: dict, b: dict) -> None:
    """Weights, optimiser moments, step, data order position and RNG: bit for bit."""
    assert a["step"] == b["step"]
    for net in ("G", "D"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key} differs"
    for opt in ("opt_g", "opt_d"):
        for idx, state in a[opt]["state"].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b[opt]["state"][idx][key])), opt
    assert torch.equal(a["rng"]["cpu"], b["rng"]["cpu"])
    assert a["sampler"].keys() == b["sampler"].keys()


def logged(run_dir: Path, *columns: str) -> list[tuple]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [tuple(row[c] for c in columns) for row in csv.DictReader(f)]


# ---- SIGKILL at random moments --------------------------------------------------------------------

KILLS = 20
PLANNED = 150


def test_kill9_loop_resumes_to_the_straight_runs_weights(ganctl, tmp_path):
    """20 SIGKILLs in a row (mid-step, mid-checkpoint, mid-start-up), each followed by `resume=`;
    after every kill last.pt loads, and the run ends with a straight run's weights, bit for bit.

    Full-size checkpoints (100k-sample data order, 857 KB) written every step make a kill during a
    write likely: leftover temporary files show which kills hit one.
    """
    rng = random.Random(16)
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.pt"
    config = [
        *BASE,
        f"trainer.steps={PLANNED}",
        "trainer.log_every=5",
        "trainer.ckpt_every=1",
        "checkpoints.keep_last=2",
    ]
    started = time.monotonic()
    steps, mid_write = [], 0
    args = ["train", *config, f"hydra.run.dir={run_dir}"]
    for kill in range(KILLS):
        before, before_inode = step_of(last), inode(last)
        child = ganctl.start(*args)
        if kill % 5 == 4:  # during start-up: the lock, Hydra's files, metrics.csv rewritten, data built
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # during training: wait for a new checkpoint, then anywhere in the next few steps
            # Each checkpoint is a new file that last.pt then names: a new inode means a new step.
            assert wait_for(lambda: inode(last) != before_inode, every=0.002), child.stop()
            time.sleep(rng.uniform(0.0, 0.05))
        child.kill()
        result = child.wait()
        assert result.returncode == -signal.SIGKILL, result.stderr
        mid_write += bool(temporaries(run_dir))
        steps.append(checkpoint.load(last)["step"])  # loads after every kill
        assert steps[-1] >= max(before, 0) and steps[-1] < PLANNED, steps
        args = ["train", f"resume={run_dir}"]
    done = ganctl.run(*args)
    assert done.returncode == 0, done.stderr
    elapsed = time.monotonic() - started
    print(f"{KILLS} kills in {elapsed:.1f} s; last.pt steps after each: {steps}; {mid_write} mid-write")
    assert not temporaries(run_dir), "a resumed run clears a killed run's temporary files"

    run(compose(*config, f"trainer.ckpt_every={PLANNED}"), tmp_path / "straight")  # writes touch no state
    assert_same_training_state(checkpoint.load(run_dir), checkpoint.load(tmp_path / "straight"))
    # One row per log step, none lost or doubled. The losses in a row average the steps since the
    # last row or resume, so only the generator's statistics at the step itself compare exactly.
    columns = ("step", "fake_mean", "fake_std")
    assert logged(run_dir, *columns) == logged(tmp_path / "straight", *columns)


# ---- Writes the environment refuses -------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_steps(ganctl, tmp_path_factory):
    """A run of 10 steps with a checkpoint at step 10 and a metrics row per step."""
    run_dir = tmp_path_factory.mktemp("limits") / "base"
    result = ganctl.run(
        "train",
        *SMALL,
        "trainer.steps=10",
        "trainer.log_every=1",
        "trainer.ckpt_every=10",
        "trainer.sample_every=1000",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr
    return run_dir


LIMITS = {  # the file that outgrows the limit first: extra overrides, RLIMIT_FSIZE in bytes
    "checkpoint": (["trainer.ckpt_every=15", "trainer.log_every=5"], lambda run_dir: 20_000, "step_000015.pt"),
    "grid": (["trainer.sample_every=15", "trainer.log_every=5"], lambda run_dir: 4_000, "step_000015.png"),
    "metrics.csv": (
        ["trainer.log_every=1"],
        lambda run_dir: (run_dir / "metrics.csv").stat().st_size + 300,
        "metrics.csv",
    ),
}


@pytest.mark.parametrize("what", sorted(LIMITS))
def test_file_size_limit_ends_in_one_line_and_keeps_the_last_checkpoint(what, ganctl, ten_steps, tmp_path):
    """RLIMIT_FSIZE makes writes past the limit fail with EFBIG (Python ignores SIGXFSZ), as a full
    disk does with ENOSPC; the run stops with one line, and resume= continues once space is back.

    `hydra.output_subdir=null` keeps Hydra's own files out of the way (hydra.yaml is ~4 KB), so
    the file under test is the first to outgrow the limit.
    """
    extra, limit, name = LIMITS[what]
    run_dir = tmp_path / "run"
    shutil.copytree(ten_steps, run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    before_ckpt, before_rows = last.read_bytes(), (run_dir / "metrics.csv").read_text()
    result = ganctl.run(
        "train",
        *SMALL,
        "trainer.steps=40",
        *extra,
        f"hydra.run.dir={run_dir}",
        "resume=auto",
        "hydra.output_subdir=null",
        fsize=limit(run_dir),
    )
    line = one_error_line(result, 1, name, "file too large", "[EFBIG]", "the last good checkpoint", "resume=")
    assert str(last) in line
    assert last.read_bytes() == before_ckpt and checkpoint.load(last)["step"] == 10
    assert (run_dir / "metrics.csv").read_text().startswith(before_rows)
    assert not temporaries(run_dir)

    done = ganctl.run("train", f"resume={run_dir}", "trainer.steps=40")
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(last)["step"] == 40
    assert [int(step) for (step,) in logged(run_dir, "step")] == list(range(1, 41))


@pytest.mark.parametrize(
    "command, output, limit",
    [
        (["sample", "-n", "20000"], "samples.npy", 20_000),  # 80 KB of float32
        (["eval", "-n", "1000"], "scores.json", 300),  # 460 bytes; the limit covers stderr's line too
    ],
)
def test_file_size_limit_in_sample_and_eval(command, output, limit, ganctl, ten_steps, tmp_path):
    """`ganctl sample` and `ganctl eval` refused their output: one line, exit 1, nothing left behind."""
    out = tmp_path / output
    result = ganctl.run(command[0], str(ten_steps), *command[1:], "-o", str(out), fsize=limit)
    one_error_line(result, 1, str(out), "file too large")
    assert os.listdir(tmp_path) == [], "no partial output, no temporary file"


def in_private_mounts(script: str) -> Result:
    """Run a shell script in its own user and mount namespaces (`unshare -rm`: no root needed where
    user namespaces are enabled), where it may mount without touching the machine's mounts."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces)")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    if proc.returncode == 99:
        pytest.skip(f"this machine refuses the mount: {proc.stderr.strip()}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_full_disk_during_a_checkpoint(tmp_path):
    """A real full disk: a 200 KB tmpfs, where two 65 KB checkpoints fit and the third does not."""
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    result = in_private_mounts(
        f"mount -t tmpfs -o size=200k tmpfs {disk} || exit 99\n"
        f"{sys.executable} -m ganctl train {' '.join(SMALL)} trainer.steps=100 trainer.ckpt_every=5 "
        f"trainer.log_every=5 hydra.run.dir={disk}/run\n"
        f"code=$?; cp -a {disk}/run {kept}; exit $code\n"
    )  # the tmpfs goes with the namespace
    one_error_line(result, 1, "no space left on the device", "[ENOSPC]", "step_000015.pt", "the last good checkpoint")
    assert checkpoint.load(kept)["step"] == 10
    assert not temporaries(kept)


def test_run_folder_vanishing_mid_run(ganctl, tmp_path):
    run_dir, gone = tmp_path / "run", tmp_path / "moved"
    child = ganctl.start(
        "train",
        *SMALL,
        "trainer.steps=100000",
        "trainer.ckpt_every=1",
        "trainer.log_every=5",
        f"hydra.run.dir={run_dir}",
    )
    assert wait_for(lambda: step_of(run_dir / "checkpoints" / "last.pt") > 0), child.stop()
    os.rename(run_dir, gone)  # the run's path no longer exists: deleted, or its disk unmounted
    one_error_line(child.wait(), 1, str(run_dir), "its folder no longer exists")
    assert checkpoint.load(gone)["step"] > 0


def test_read_only_checkpoint_folder(ten_steps, tmp_path):
    """A read-only file system under checkpoints/ (a read-only bind mount; root cannot write there either)."""
    run_dir = tmp_path / "run"
    shutil.copytree(ten_steps, run_dir)
    folder = run_dir / "checkpoints"
    result = in_private_mounts(
        f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} || exit 99\n"
        f"exec {sys.executable} -m ganctl train resume={run_dir} trainer.steps=20\n"
    )
    one_error_line(result, 1, "step_000020.pt", "read-only", "[EROFS]", "the last good checkpoint")
    assert checkpoint.load(run_dir)["step"] == 10


# ---- One folder, one run ------------------------------------------------------------------------


def test_second_process_is_refused_and_a_finished_run_is_not_overwritten(ganctl, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        "train",
        *SMALL,
        "trainer.steps=100000",
        "trainer.log_every=5",
        "trainer.ckpt_every=10",
        f"hydra.run.dir={run_dir}",
    ]
    first = ganctl.start(*command)
    assert wait_for(lambda: step_of(run_dir / "checkpoints" / "last.pt") >= 10), first.stop()
    hydra_files = {p: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}

    # Two processes, one folder: the second stops before Hydra writes anything there.
    one_error_line(ganctl.run(*command), 1, str(run_dir), "in use by process", str(first.pid))
    assert {p: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == hydra_files
    resumed = ganctl.run("train", f"resume={run_dir}")
    one_error_line(resumed, 1, str(first.pid))

    # SIGKILL: the kernel drops the lock with the process, so no stale lock is left to clear.
    first.kill()
    first.wait()
    kept = {p: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    again = ganctl.run(*command)
    one_error_line(again, 2, "already holds a ganctl run", f"resume={run_dir}", "hydra.run.dir=", "overwrite=true")
    assert {p: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == kept

    fresh = ganctl.run(
        "train", *SMALL, "trainer.steps=10", "trainer.log_every=5", f"hydra.run.dir={run_dir}", "overwrite=true"
    )
    assert fresh.returncode == 0, fresh.stderr
    aside = tmp_path / "run.old-1"
    assert f"moved the previous run aside to {aside}" in fresh.stdout
    assert {aside / "checkpoints" / p.name: b for p, b in kept.items()} == {
        p: p.read_bytes() for p in (aside / "checkpoints").iterdir()
    }
    assert checkpoint.load(run_dir)["step"] == 10


# ---- Sweeps -------------------------------------------------------------------------------------


def test_interrupted_sweep_started_again_keeps_finished_jobs(ganctl, tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        "train",
        "-m",
        "seed=0,1,2",
        *SMALL,
        "trainer.steps=30",
        "trainer.log_every=10",
        "trainer.ckpt_every=5",
        f"hydra.sweep.dir={sweep}",
    ]
    child = ganctl.start(*command)
    assert wait_for(lambda: step_of(sweep / "1" / "checkpoints" / "last.pt") >= 5), child.stop()
    child.kill()
    child.wait()
    finished = {
        p: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in (sweep / "0").rglob("*")
        if p.is_file() and not p.name.startswith(".") and ".hydra" not in p.parts and p.name != "train.log"
    }
    assert step_of(sweep / "0" / "checkpoints" / "last.pt") == 30
    assert 5 <= step_of(sweep / "1" / "checkpoints" / "last.pt") < 30, "job 1 was interrupted"

    other = ganctl.run("train", "-m", "seed=5,6", *SMALL, "trainer.steps=30", f"hydra.sweep.dir={sweep}")
    one_error_line(other, 2, str(sweep), "another command", "seed=0,1,2", "hydra.sweep.dir=", "overwrite=true")

    again = ganctl.run(*command)
    assert again.returncode == 0, again.stderr
    assert "job 0:" in again.stdout and "kept, not rerun" in again.stdout
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished} == finished
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["job"], r["status"], r["steps"]) for r in rows) == [(j, "ok", "30") for j in "012"]
    # The interrupted job continued from its checkpoint to the same weights as an uninterrupted job.
    run(
        compose(*SMALL, "seed=1", "trainer.steps=30", "trainer.log_every=10", "trainer.ckpt_every=5"),
        tmp_path / "straight",
    )
    assert_same_training_state(checkpoint.load(sweep / "1"), checkpoint.load(tmp_path / "straight"))
