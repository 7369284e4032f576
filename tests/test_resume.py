"""Never lose a run: exact resume, signals, the NaN guard (SIGKILL and full disks: tests/test_faults.py)."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from ganctl.cli import resume_config
from ganctl.commands.train import run
from ganctl.training import checkpoint

from conftest import REPO, compose, run_cli, straight_and_resumed


def assert_same_state(a: dict, b: dict):
    for net in ("G", "D"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key} differs"
    for opt in ("opt_g", "opt_d"):
        sa, sb = a[opt]["state"], b[opt]["state"]
        assert sa.keys() == sb.keys()
        for idx in sa:
            for key, value in sa[idx].items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[idx][key])), f"{opt}[{idx}].{key}"
    assert a["step"] == b["step"]
    assert torch.equal(a["rng"]["cpu"], b["rng"]["cpu"])


EXPERIMENTS = {
    "mnist_bce": lambda roots: ["+experiment=mnist_bce", f"dataset.root={roots['mnist']}", "dataset.split=test"],
    "mnist_goodfellow": lambda roots: [
        "+experiment=mnist_goodfellow",
        f"dataset.root={roots['mnist']}",
        "dataset.split=test",
        "trainer.epochs=null",
        "trainer.batch_size=4000",
    ],
    "gaussian1d": lambda roots: ["+experiment=gaussian1d", "dataset.samples_per_epoch=2500"],
    "svhn_wgan_gp": lambda roots: [
        "+experiment=svhn_wgan_gp",
        f"dataset.root={roots['svhn']}",
        "model.width=8",
        "trainer.batch_size=32",
        "trainer.epochs=null",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_resume_is_bitwise_exact(name, mnist_root, svhn_root, tmp_path):
    """2N steps straight == N steps, stop, resume N more: weights, optimiser states and RNG.

    Small batches cross epoch boundaries (goodfellow: batch 4000 of 10k, gaussian: 2500/500), so
    the saved permutation and its position matter too.
    """
    n = 4
    base = EXPERIMENTS[name]({"mnist": mnist_root, "svhn": svhn_root}) + [
        "trainer.progress=false",
        "trainer.log_every=2",
        "trainer.sample_every=100",
        "trainer.ckpt_every=100",
    ]
    _, changed = straight_and_resumed(base, n, 2 * n, tmp_path)
    assert changed == [f"trainer.steps: {n} -> {2 * n}"]
    assert_same_state(checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split"))
    straight = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    resumed = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    steps = lambda lines: [ln.split(",")[0] for ln in lines]  # noqa: E731
    assert steps(resumed) == steps(straight) == ["step", "2", "4", "6", "8"]


def test_resume_override_reaches_the_optimiser(mnist_root, tmp_path):
    base = [
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.progress=false",
        "trainer.log_every=2",
    ]
    run(compose(*base, "trainer.steps=2"), tmp_path / "r")
    ckpt = checkpoint.load(tmp_path / "r")
    cfg, changed = resume_config(ckpt, ["trainer.steps=4", "optim.lr=1e-3"])
    assert "optim.lr: 0.0002 -> 0.001" in changed
    run(cfg, tmp_path / "r", resume=ckpt)
    assert checkpoint.load(tmp_path / "r")["opt_g"]["param_groups"][0]["lr"] == 1e-3


def test_keep_last(mnist_root, tmp_path):
    cfg = compose(
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.progress=false",
        "trainer.steps=10",
        "trainer.log_every=5",
        "trainer.ckpt_every=2",
        "checkpoints.keep_last=2",
    )
    run(cfg, tmp_path / "k")
    names = sorted(p.name for p in (tmp_path / "k" / "checkpoints").iterdir())
    assert names == ["last.pt", "step_000008.pt", "step_000010.pt"]
    assert checkpoint.load(tmp_path / "k")["step"] == 10


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_resumes(signum, code, mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "train",
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.steps=100000",
        "trainer.log_every=5",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ganctl", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = run_dir / "metrics.csv"
    assert wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 2), "never started"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"resume with: ganctl train resume={run_dir}" in err and "Traceback" not in err
    stopped = checkpoint.load(run_dir)
    assert 5 <= stopped["step"] < 100000
    done = run_cli("train", f"resume={run_dir}", f"trainer.steps={stopped['step'] + 6}", "trainer.progress=false")
    assert done.returncode == 0, done.stderr
    assert "changed: trainer.steps" in done.stdout
    assert checkpoint.load(run_dir)["step"] == stopped["step"] + 6


def test_nan_guard_keeps_last_good_checkpoint(mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli(
        "train",
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "optim=sgd",
        "optim.lr=0.01",
        "trainer.steps=10",
        "trainer.log_every=5",
        "trainer.ckpt_every=10",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
    )
    assert first.returncode == 0, first.stderr
    boom = run_cli("train", f"resume={run_dir}", "optim.lr=1e8", "trainer.steps=40", "trainer.progress=false")
    assert boom.returncode == 1, boom.stderr
    lines = [ln for ln in boom.stderr.splitlines() if ln.startswith("ganctl: error:")]
    assert len(lines) == 1 and "non-finite between steps 10 and 15" in lines[0]
    assert "checkpoints/step_000010.pt" in lines[0] and "Traceback" not in boom.stderr
    kept = checkpoint.load(run_dir)
    assert kept["step"] == 10 and all(torch.isfinite(v).all() for v in kept["G"].values())


def test_nan_skip_mode_counts_and_gives_up(mnist_root, tmp_path):
    cfg = compose(
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "optim=sgd",
        "optim.lr=1e8",
        "trainer.steps=50",
        "trainer.log_every=5",
        "trainer.progress=false",
        "trainer.on_nan=skip",
        "trainer.max_nan_skips=3",
    )
    from ganctl.errors import Diverged

    with pytest.raises(Diverged, match="3 steps in a row"):
        run(cfg, tmp_path / "s")


def test_adaptive_augmentation_resumes_exactly(mnist_root, tmp_path):
    """trainer.augment_p=auto: p and the scores counted towards its next adjustment are training
    state. Split at step 9, inside an ADA interval (4 D updates), so both must come back."""
    base = [
        "+experiment=mnist_best",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "model.width=8",
        "trainer.batch_size=16",
        "optim.schedule=constant",  # the recipe's linear decay depends on trainer.steps, which the split run changes
        "trainer.augment_p=auto",
        "trainer.augment=[xflip,rotate90,translation]",
        "trainer.progress=false",
        "trainer.log_every=1",
    ]
    first, _ = straight_and_resumed(base, 9, 14, tmp_path)
    assert first["augment"]["signs"][1] == 16  # one D update's scores counted since the last adjustment
    straight, split = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    assert_same_state(straight, split)
    for key in ("p", "signs"):
        assert torch.equal(straight["augment"][key], split["augment"][key]), key
    # D grows sure of the real images in these first steps: p rose at steps 8 and 12 (measured), so
    # a resume that lost p (0 again at step 9) would end one step lower.
    assert float(first["augment"]["p"]) > 0
    assert float(split["augment"]["p"]) == pytest.approx(2 * 16 * 4 / 100_000)
    column = lambda folder: [r.split(",")[-3] for r in (folder / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert column(tmp_path / "split") == column(tmp_path / "straight")
