"""trainer.minutes: the run times its first updates, records the steps it chose, and a resume keeps them."""

import logging
import shutil

import pytest
from test_resume import assert_same_state

import ganctl
from ganctl.cli import resume_config
from ganctl.commands.train import run
from ganctl.errors import ConfigError
from ganctl.runfolder import RunFolder
from ganctl.training import checkpoint

from conftest import compose, run_cli

# The 8-Gaussian ring's MLP at batch 64 (a few ms a step), with what depends on the run's length
# turned on from the first step: a linear decay from step 0, and G_ema with its warm-up.
BASE = [
    "+experiment=ring8",
    "trainer.batch_size=64",
    "optim.schedule=linear",
    "optim.decay_start=0",
    "trainer.ema_half_life=500",
    "trainer.ema_warmup=0.05",
    "trainer.progress=false",
    "trainer.log_every=5",
    "trainer.sample_every=100000",
    # A step checkpoint to resume from, without thousands of them: every 5 steps kept 537 files
    # (2.8 GB over the test's three runs) where the budget held ~2,700 steps.
    "trainer.ckpt_every=100",
]


def test_minutes_records_steps_and_equals_a_run_of_those_steps(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ganctl.budget"):
        summary = run(compose(*BASE, "trainer.minutes=0.1"), tmp_path / "timed")
    lines = [r.getMessage() for r in caplog.records if r.name == "ganctl.budget"]
    n = summary["steps"]
    assert len(lines) == 1 and lines[0].endswith(f"trainer.steps={n}"), lines
    timed = checkpoint.load(tmp_path / "timed")
    assert timed["step"] == n and timed["config"]["trainer"]["steps"] == n
    assert timed["config"]["trainer"]["minutes"] == 0.1 and timed["config"]["trainer"]["epochs"] is None

    # The timing ran on copies with the random streams forked: the run is one of trainer.steps=N.
    run(compose(*BASE, f"trainer.steps={n}"), tmp_path / "straight")
    assert_same_state(checkpoint.load(tmp_path / "straight"), timed)

    # Resumed from an earlier checkpoint, the run goes on to the recorded N (the schedule's end),
    # without timing again, and ends bit for bit where the uninterrupted run ended.
    # 6 s of budget hold hundreds of this MLP's steps (a few ms each) even on a busy 2-core machine:
    # ~2,700 on the Xeon, ~500 where ring8 ran 89 steps/s (the AVX2-only EPYC, one thread).
    assert n > 100, f"the budget held {n} steps: no step checkpoint before the last to resume from"
    k = (n - 1) // 100 * 100
    shutil.copytree(tmp_path / "timed", tmp_path / "resumed")
    ckpt = checkpoint.load(RunFolder(tmp_path / "resumed").step_checkpoint(k))
    cfg, changed = resume_config(ckpt, [])
    assert changed == [] and cfg.trainer.steps == n
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ganctl.budget"):
        run(cfg, tmp_path / "resumed", resume=ckpt)
    assert not [r for r in caplog.records if r.name == "ganctl.budget"]
    assert_same_state(checkpoint.load(tmp_path / "resumed"), timed)

    # The original command with resume= appended (a requeued job) composes the recipe's
    # trainer.steps=3000 again: the recorded length wins; a resume may still set its own.
    cfg, _ = resume_config(ckpt, [*BASE, "trainer.minutes=0.1"])
    assert cfg.trainer.steps == n
    cfg, changed = resume_config(ckpt, [f"trainer.steps={n + 10}"])
    assert cfg.trainer.steps == n + 10 and changed == [f"trainer.steps: {n} -> {n + 10}"]
    with pytest.raises(ConfigError, match=r"trainer.minutes=1: a time budget sets a new run's length"):
        resume_config(ckpt, ["trainer.minutes=1"])


@pytest.mark.parametrize("length", ["trainer.steps=100", "trainer.epochs=2"])
def test_minutes_refused_with_steps_or_epochs(length):
    with pytest.raises(ConfigError, match=f"trainer.minutes=1 sets the run's length, and so does {length}"):
        ganctl.compose("ring8", "trainer.minutes=1", length)
    # The recipe's own trainer.steps (an experiment, or image data's recipe) is not the user's.
    assert ganctl.compose("mnist_best", "trainer.minutes=1").trainer.minutes == 1
    assert ganctl.compose(None, "dataset=mnist", "trainer.minutes=1").trainer.minutes == 1


def test_minutes_on_the_command_line(tmp_path):
    """The CLI prints the chosen steps in one line and writes them into .hydra/config.yaml; with
    trainer.steps it exits 2 with one line."""
    out = tmp_path / "run"
    proc = run_cli("train", *BASE, "trainer.minutes=0.02", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    n = checkpoint.load(out)["step"]
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "trainer.minutes=0.02:" in ln]
    assert len(said) == 1 and said[0].endswith(f"trainer.steps={n}"), proc.stdout + proc.stderr
    from omegaconf import OmegaConf

    saved = OmegaConf.load(out / ".hydra" / "config.yaml").trainer
    assert saved.steps == n and saved.epochs is None and saved.minutes == 0.02

    proc = run_cli("train", "+experiment=mnist_best", "trainer.minutes=10", "trainer.steps=500")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "ganctl: error: trainer.minutes=10 sets the run's length, and so does trainer.steps=500; "
        "accepted: one of trainer.minutes, trainer.steps, trainer.epochs"
    ]


def test_the_timing_covers_whole_cycles_of_a_lazy_penalty(tmp_path, caplog):
    """R1 every 7 D updates costs more than the other six: the timed steps are a multiple of 7, so
    the per-step estimate holds one R1 for every seven steps, as the run will."""
    import re

    with caplog.at_level(logging.INFO, logger="ganctl.budget"):
        run(compose(*BASE, "loss.r1_gamma=0.1", "loss.r1_every=7", "trainer.minutes=0.02"), tmp_path / "r1")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ganctl.budget"]
    timed = int(re.search(r"timed over (\d+) steps", line).group(1))
    assert timed >= 7 and timed % 7 == 0, line


def test_cycle_lengths():
    """Steps per cycle of lazy penalties: R1 every K D updates, d_steps D updates a step."""
    from ganctl.training.budget import cycle

    def steps(*overrides):
        return cycle(ganctl.compose("mnist_best", *overrides))

    assert steps() == 16  # R1 every 16 D updates, one a step
    assert steps("trainer.d_steps=20") == 4  # 80 D updates hold 5 R1s: the pattern repeats every 4 steps
    assert steps("loss.r1_every=7", "trainer.d_steps=7") == 1  # one R1 in every step
    assert steps("loss.r1_every=256") == 1  # past MAX_CYCLE: timed in part, its step under 1% of the run
    assert steps("loss.r1_gamma=0") == 1  # no lazy penalty
