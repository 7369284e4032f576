"""The fast paths give the plain path's results: optimiser implementations, bf16, torch.compile."""

import math

import pytest
import torch

from ganctl.commands.train import run
from ganctl.training import checkpoint

from conftest import TINY, compose


def train_weights(mnist_root, tmp_path, name, *extra):
    cfg = compose("+experiment=mnist_bce", f"dataset.root={mnist_root}", "dataset.split=test", *TINY, *extra)
    run(cfg, tmp_path / name)
    return checkpoint.load(tmp_path / name)["G"]


def max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("impl", ["single", "fused"])
def test_optimizer_implementations_agree(impl, mnist_root, tmp_path):
    ref = train_weights(mnist_root, tmp_path, "foreach", "optim.impl=foreach")
    other = train_weights(mnist_root, tmp_path, impl, f"optim.impl={impl}")
    assert max_diff(ref, other) < 1e-5


def test_fp16_needs_cuda(capsys):
    from ganctl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "trainer.precision=fp16", "trainer.device=cpu"])
    assert exc.value.code == 2 and "fp16 needs a CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_matches_eager(mnist_root, tmp_path):
    """torch.compile of G and D (about a minute of compiling on 2 cores), checkpoints without prefixes."""
    ref = train_weights(mnist_root, tmp_path, "eager")
    compiled = train_weights(mnist_root, tmp_path, "compiled", "trainer.compile=true")
    assert ref.keys() == compiled.keys()
    assert max_diff(ref, compiled) < 1e-5


OPTIMISERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, fused=True),  # setup 002's
    "sgd_nesterov_wd": lambda p: torch.optim.SGD(
        p, lr=1e-2, momentum=0.5, nesterov=True, weight_decay=0.01, fused=True
    ),
    "sgd_plain": lambda p: torch.optim.SGD(p, lr=1e-2, fused=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_direct_fused_update_equals_optimizer_step(name):
    """stepper's direct kernel call leaves the weights and the optimiser's state bit for bit as opt.step does."""
    from ganctl.training.cpu_kernels import stepper

    def make():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))
        return net, OPTIMISERS[name](net.parameters())

    (net_a, opt_a), (net_b, opt_b) = make(), make()
    step_b = stepper(opt_b)
    assert step_b != opt_b.step  # the direct path is in use
    for i in range(6):
        x = torch.randn(8, 20)
        for net, step in ((net_a, opt_a.step), (net_b, step_b)):
            net.zero_grad(set_to_none=True)
            net(x).square().mean().backward()
            step()
        if i == 3:  # a resume replaces the optimiser's state and groups: the stepper follows both
            for opt in (opt_a, opt_b):
                state = opt.state_dict()
                state["param_groups"][0]["lr"] = 3e-3
                opt.load_state_dict(state)
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(pa, pb)
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa.keys() == sb.keys()
        assert all(v is None and sb[k] is None or torch.equal(v, sb[k]) for k, v in sa.items())
    unfused = type(opt_a)(net_a.parameters(), lr=1e-3, foreach=True)
    assert stepper(unfused) == unfused.step  # not fused: the optimiser's own step
    adam = torch.optim.Adam(net_a.parameters(), fused=True)
    assert stepper(adam) == adam.step  # fused Adam's direct call was removed: under 1.15x here


@pytest.mark.slow
def test_compiled_wgan_gp_trains(svhn_root, tmp_path):
    """Setup 003 compiled: the penalty's double backward goes through D uncompiled (AOTAutograd
    refuses it), everything else through the compiled nets. About 30 s of compiling on 2 cores."""
    cfg = compose(
        "+experiment=svhn_wgan_gp",
        f"dataset.root={svhn_root}",
        "trainer.steps=3",
        "trainer.log_every=3",
        "model.width=8",
        "trainer.batch_size=16",
        "trainer.compile=true",
        "trainer.device=cpu",
        "trainer.progress=false",
    )
    run(cfg, tmp_path / "run")
    import csv

    with open(tmp_path / "run" / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["step"] == "3"
    assert all(torch.isfinite(torch.tensor(float(row[k]))) for k in ("d_loss", "g_loss", "grad_norm"))
    assert float(row["grad_norm"]) > 0  # the penalty ran


def test_auto_says_what_it_picked_and_caches_it(tmp_path):
    """`auto` times the combinations once, says which it took (console and train.log), and the
    next run of the same shapes reads the pick from the cache."""
    from conftest import run_cli

    env = {"GANCTL_AUTOTUNE": "fresh", "GANCTL_CACHE": str(tmp_path / "cache")}
    args = ["train", "trainer.steps=5", "trainer.log_every=5", "trainer.progress=false"]
    first = run_cli(*args, f"hydra.run.dir={tmp_path / 'a'}", env=env)
    assert first.returncode == 0, first.stderr
    log = (tmp_path / "a" / "train.log").read_text()
    assert "fast path backward=" in log and "per update against" in log, log
    assert "measured now" in log
    cache = tmp_path / "cache" / "autotune.json"
    if "not cached" not in log:  # a run during a burst of other work is timed again next time
        assert cache.is_file()
        second = run_cli(*args, f"hydra.run.dir={tmp_path / 'b'}", env={**env, "GANCTL_AUTOTUNE": ""})
        assert second.returncode == 0, second.stderr
        assert "cached from" in (tmp_path / "b" / "train.log").read_text()


class _Clock:
    """A fake time.perf_counter for autotune: each trial call advances it by its path's cost."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    "bf16_ms, fp32_fast_ms, expected",
    [
        (9.5, 10.0, "fp32"),  # 5% faster: within what lower precision must beat, fp32 stays
        (6.0, 10.0, "bf16"),  # 40% faster than every fp32 path: bf16
        (8.5, 8.0, "fp32"),  # faster than plain fp32 (10 ms) but not than channels-last fp32
    ],
)
def test_precision_auto_weighs_bf16_against_the_fastest_fp32(monkeypatch, tmp_path, bf16_ms, fp32_fast_ms, expected):
    from ganctl import autotune
    from ganctl.training import fast_paths

    monkeypatch.setenv("GANCTL_AUTOTUNE", "fresh")
    monkeypatch.setenv("GANCTL_CACHE", str(tmp_path))
    monkeypatch.setattr(fast_paths, "native_bf16", lambda device: True)
    clock = _Clock()
    monkeypatch.setattr(autotune, "_clock", clock)
    cfg = compose("+experiment=svhn_wgan_gp", "trainer.precision=auto", "trainer.cpu_matmul=blas")
    seen = []

    def trial(paths):
        seen.append((paths.channels_last, paths.precision))
        ms = bf16_ms if paths.precision == "bf16" else (fp32_fast_ms if paths.channels_last else 10.0)
        return lambda: setattr(clock, "t", clock.t + ms / 1e3)

    pick, reason = fast_paths.choose(cfg, torch.device("cpu"), 1, True, trial, {"case": [bf16_ms, fp32_fast_ms]})
    assert set(seen) == {(c, p) for c in (False, True) for p in ("fp32", "bf16")}
    assert pick.precision == expected and f"precision={expected}" in reason
    # The same pick from the cache, whose timings come back in sorted order.
    monkeypatch.setenv("GANCTL_AUTOTUNE", "")
    again, reason = fast_paths.choose(cfg, torch.device("cpu"), 1, True, trial, {"case": [bf16_ms, fp32_fast_ms]})
    assert again == pick and "cached" in reason


def test_precision_auto_without_bf16_units_is_fp32(monkeypatch, mnist_root, tmp_path):
    """Where the hardware has no bf16 units, auto has nothing to time: fp32, and the run trains."""
    from ganctl.training import fast_paths

    monkeypatch.setattr(fast_paths, "native_bf16", lambda device: False)
    cfg = compose("+experiment=mnist_bce", "trainer.precision=auto", "trainer.backward=autograd")
    assert {p.precision for p in fast_paths.candidates(cfg, torch.device("cpu"), 1, False)} == {"fp32"}
    weights = train_weights(mnist_root, tmp_path, "auto", "trainer.precision=auto", "trainer.backward=autograd")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_conv_wgan_gp_trains_in_bf16(svhn_root, tmp_path):
    """Setup 003's critic and penalty under bf16 autocast (what precision=auto picks where bf16
    pays): a few steps with finite losses whose penalty is of fp32's size. The penalty's gradient
    norm is computed from bf16 products, so it differs from fp32's by bf16's rounding (~1%), not
    by a factor."""
    rows = {}
    for precision in ("fp32", "bf16"):
        cfg = compose(
            "+experiment=svhn_wgan_gp",
            f"dataset.root={svhn_root}",
            "dataset.split=train",
            "model.width=8",
            "trainer.batch_size=8",
            "trainer.steps=2",
            "trainer.log_every=1",
            "trainer.progress=false",
            "trainer.device=cpu",
            f"trainer.precision={precision}",
        )
        run(cfg, tmp_path / precision)
        rows[precision] = (tmp_path / precision / "metrics.csv").read_text().splitlines()
    header = rows["fp32"][0].split(",")
    first = {p: dict(zip(header, rows[p][1].split(","))) for p in rows}
    for p in rows:
        assert all(math.isfinite(float(first[p][k])) for k in ("d_loss", "g_loss"))
    norms = [float(first[p]["grad_norm"]) for p in ("bf16", "fp32")]
    # bf16 keeps 8 significant bits (eps 3.9e-3) of every product's inputs, and the penalty's norm
    # is a gradient through D's products and back, so the error compounds along the chain to a
    # few percent at most (1-7% per tensor on the MLP's longer chain, test_steps.py); 5% bounds
    # the norm, a sum over all rows, with room, and a wrong or missing penalty is off by a factor.
    assert norms[0] == pytest.approx(norms[1], rel=0.05)
    assert norms[0] != norms[1]  # bf16 really ran


def test_resume_keeps_the_checkpoints_fast_path(monkeypatch, mnist_root, tmp_path, caplog):
    """The pick is part of the run: the checkpoint and the summary hold it, and a resume whose
    settings are `auto` takes it again instead of timing (which could pick another path)."""
    from ganctl.training import fast_paths

    monkeypatch.setenv("GANCTL_AUTOTUNE", "fresh")
    monkeypatch.setenv("GANCTL_CACHE", str(tmp_path / "cache"))
    args = ["+experiment=mnist_bce", f"dataset.root={mnist_root}", "dataset.split=test", *TINY, "trainer.ckpt_every=5"]
    torch.set_num_threads(2)  # a process with a thread to give up, as outside the test suite
    try:
        summary = run(compose(*args, "trainer.backward=manual", "trainer.threads=1"), tmp_path / "run")
        assert torch.get_num_threads() == 2  # the run gave the process its count back
        ckpt = checkpoint.load(tmp_path / "run")
        pick = {"device": "cpu", "backward": "manual", "channels_last": False, "precision": "fp32", "threads": 1}
        assert ckpt["fast_path"] == summary["fast_path"] == pick
        # As if `auto` had picked manual and one thread:
        ckpt["config"]["trainer"]["backward"], ckpt["config"]["trainer"]["threads"] = "auto", None

        def untimed(*a, **k):
            raise AssertionError("a kept pick is not timed")

        monkeypatch.setattr(fast_paths.autotune, "choose", untimed)
        with caplog.at_level("INFO", logger="ganctl.fast_path"):
            resumed = run(compose(*args, "trainer.steps=8"), tmp_path / "run", resume=ckpt)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert resumed["fast_path"] == pick and checkpoint.load(tmp_path / "run")["fast_path"] == pick
    kept = "fast path backward=manual, channels_last=false, precision=fp32, threads=1 (kept from the checkpoint)"
    assert kept in caplog.text


def test_a_pick_that_cannot_be_kept_says_why_in_one_line():
    """Another kind of device, or a path this run does not allow: one line, then a new choice."""
    from ganctl.training import fast_paths

    cfg = compose("+experiment=mnist_bce", "trainer.device=cpu")
    trial = lambda paths: lambda: None  # noqa: E731
    cuda = {"device": "cuda", "backward": "autograd", "channels_last": False, "precision": "bf16"}
    pick, reason = fast_paths.choose(cfg, torch.device("cpu"), 1, False, trial, {"t": 1}, cuda)
    assert pick == fast_paths.Paths() and "\n" not in reason  # GANCTL_AUTOTUNE=off: the plain path
    assert reason.startswith("the checkpoint's fast path backward=autograd, channels_last=false, precision=fp32 ")
    assert "cannot be kept (it was picked on cuda, this run trains on cpu); choosing again" in reason
    manual = {"device": "cpu", "backward": "manual", "channels_last": False, "precision": "fp32"}
    elu = compose("+experiment=mnist_bce", "trainer.device=cpu", "model.d_act=elu")
    pick, reason = fast_paths.choose(elu, torch.device("cpu"), 1, False, trial, {"t": 2}, manual)
    assert pick.backward == "autograd" and "the manual step does not apply here: model.d_act=elu" in reason
    # An explicit setting in the resumed config wins over the checkpoint's pick.
    explicit = compose("+experiment=mnist_bce", "trainer.device=cpu", "trainer.backward=autograd")
    pick, reason = fast_paths.choose(explicit, torch.device("cpu"), 1, False, trial, {"t": 3}, manual)
    assert pick.backward == "autograd" and "kept from the checkpoint" in reason


def test_default_auto_path_trains_and_records_its_pick(monkeypatch, mnist_root, tmp_path):
    """What users get by default (GANCTL_AUTOTUNE unset): auto times the allowed paths, trains on
    the pick and records it. The suite elsewhere forces the plain path for bitwise comparisons."""
    monkeypatch.delenv("GANCTL_AUTOTUNE", raising=False)
    monkeypatch.setenv("GANCTL_CACHE", str(tmp_path / "cache"))
    cfg = compose("+experiment=mnist_bce", f"dataset.root={mnist_root}", "dataset.split=test", *TINY)
    summary = run(cfg, tmp_path / "run")
    pick = checkpoint.load(tmp_path / "run")["fast_path"]
    assert pick == summary["fast_path"] and pick["backward"] in ("autograd", "manual")
    assert all(torch.isfinite(w).all() for w in checkpoint.load(tmp_path / "run")["G"].values())


def test_setup_002_never_imports_dynamo(tmp_path):
    """Setup 002's manual step (direct fused SGD) trains, checkpoints and resumes without importing
    torch._dynamo (~1 s of a short run's start-up), and leaves Optimizer's own wrappers unmarked."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    script = f"""
import sys, torch
from ganctl.cli import main
from ganctl.training.cpu_kernels import _DYNAMO_WRAPPED
run = ["+experiment=gaussian1d", "trainer.backward=manual", "trainer.progress=false"]
main(["train", *run, "trainer.steps=3", "hydra.run.dir={run_dir}"])
main(["train", *run, "resume={run_dir}", "trainer.steps=5"])
marks = [getattr(getattr(torch.optim.Optimizer, n).__wrapped__, "__dynamo_disable", None) for n in _DYNAMO_WRAPPED]
print("dynamo imported:", "torch._dynamo" in sys.modules, "marks left:", sum(m is not None for m in marks))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "dynamo imported: False marks left: 0" in out.stdout, out.stdout
    assert checkpoint.load(run_dir)["step"] == 5


def test_threads_candidates_and_the_run_count(tmp_path):
    """trainer.threads=null offers one thread against the process's count on an eager one-process
    CPU run; an explicit count is the only candidate; build trains on the pick's count."""
    from ganctl.training import fast_paths
    from ganctl.training.build import build
    from ganctl.training.distributed import Rank

    cpu = torch.device("cpu")
    cfg = compose("+experiment=gaussian1d", "trainer.device=cpu")
    torch.set_num_threads(2)
    try:
        assert fast_paths.thread_counts(cfg, cpu, 1) == [None, 1]
        assert fast_paths.thread_counts(cfg, cpu, 2) == [None]  # data parallel: each process keeps its own
        assert fast_paths.thread_counts(compose("+experiment=gaussian1d", "trainer.compile=true"), cpu, 1) == [None]
        assert fast_paths.thread_counts(compose("+experiment=gaussian1d", "trainer.threads=3"), cpu, 1) == [3]
        names = [str(p) for p in fast_paths.candidates(cfg, cpu, 1, False)]
        assert names[0] == "backward=autograd, channels_last=false, precision=fp32"  # the plain path first
        assert "backward=manual, channels_last=false, precision=fp32, threads=1" in names
        with fast_paths.threads_kept():
            r = build(compose("+experiment=gaussian1d", "trainer.device=cpu", "trainer.threads=1"), Rank())
            assert torch.get_num_threads() == 1 and r.process_threads == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert fast_paths.thread_counts(cfg, cpu, 1) == [None]  # one thread already: nothing to give up


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_thread_count_is_one_line(value, tmp_path):
    from conftest import run_cli

    out = run_cli("train", "+experiment=gaussian1d", f"trainer.threads={value}", f"hydra.run.dir={tmp_path / 'r'}")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.threads" in lines[0] and value in lines[0], out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("one_thread_ms, expected", [(0.797, None), (0.7, 1)])
def test_one_thread_must_beat_the_process_count_by_the_margin(monkeypatch, tmp_path, one_thread_ms, expected):
    """The thread count governs the whole run: one thread is taken only where it beats the same
    path at the process's count by autotune's margin, and each candidate is timed at its own count."""
    from ganctl import autotune
    from ganctl.training import fast_paths

    monkeypatch.setenv("GANCTL_AUTOTUNE", "fresh")
    monkeypatch.setenv("GANCTL_CACHE", str(tmp_path))
    clock = _Clock()
    monkeypatch.setattr(autotune, "_clock", clock)
    cfg = compose("+experiment=gaussian1d", "trainer.device=cpu")
    counts = {}

    def trial(paths):
        ms = 2.0 if paths.backward == "autograd" else (one_thread_ms if paths.threads == 1 else 0.8)

        def call():
            counts.setdefault(str(paths), set()).add(torch.get_num_threads())
            clock.t += ms / 1e3

        return call

    torch.set_num_threads(2)
    try:
        pick, reason = fast_paths.choose(cfg, torch.device("cpu"), 1, False, trial, {"case": one_thread_ms})
        assert torch.get_num_threads() == 2  # the timing gave the count back
    finally:
        torch.set_num_threads(1)
    assert pick == fast_paths.Paths("manual", False, "fp32", expected), reason
    assert len(counts) == 4 and all(c == ({1} if name.endswith("threads=1") else {2}) for name, c in counts.items())


def test_a_one_thread_run_samples_and_evaluates_on_the_process_count(monkeypatch, tmp_path):
    """The thread pick was timed on the updates: the updates run on it, the sample grids and the
    evaluations on the count the process had."""
    import ganctl.commands.train as train_command
    from ganctl.training.evaluator import Evaluator
    from ganctl.training.step import GANStep

    seen = {"update": set(), "sample": set(), "eval": set()}

    def recording(kind, fn):
        def call(*args, **kwargs):
            seen[kind].add(torch.get_num_threads())
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(GANStep, "g_phase", recording("update", GANStep.g_phase))
    monkeypatch.setattr(Evaluator, "__call__", recording("eval", Evaluator.__call__))
    monkeypatch.setattr(train_command, "save_samples", recording("sample", train_command.save_samples))
    cfg = compose(
        "+experiment=gaussian1d",
        "trainer.threads=1",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.eval_every=2",
        "trainer.sample_every=2",
        "trainer.progress=false",
    )
    torch.set_num_threads(2)
    try:
        run(cfg, tmp_path / "run")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert seen == {"update": {1}, "sample": {2}, "eval": {2}}
