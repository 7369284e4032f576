"""The run's length is the one the user gives: trainer.steps, trainer.epochs or trainer.minutes."""

import pytest

import ganctl
from ganctl.errors import ConfigError
from ganctl.launch.recipe import in_front
from ganctl.training import checkpoint

from conftest import run_cli


def test_epochs_on_the_command_line_outrank_an_experiments_steps(tmp_path):
    """ring8 sets trainer.steps=3000; with trainer.epochs=2 on top, the run used to train 3000
    steps (steps win over epochs) and ignore the epochs without a word."""
    run = ganctl.train(
        "ring8",
        tmp_path / "run",
        "trainer.epochs=2",
        "dataset.samples_per_epoch=640",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "trainer.sample_every=100000",
        "trainer.log_every=5",
    )
    # 2 epochs of 640 samples in batches of 64, one D update a step.
    assert checkpoint.load(run.run_dir)["step"] == 20
    # The image recipe's trainer.steps=10000 gives way the same way.
    cfg = ganctl.compose(None, "dataset=folder", "dataset.path=imgs", "trainer.epochs=3")
    assert (cfg.trainer.steps, cfg.trainer.epochs) == (None, 3)
    # A length the user does not give keeps the recipe's.
    assert ganctl.compose("ring8").trainer.steps == 3000
    assert ganctl.compose("mnist_bce", "trainer.steps=7").trainer.steps == 7


def test_two_lengths_are_refused_in_one_line():
    proc = run_cli("train", "+experiment=ring8", "trainer.steps=10", "trainer.epochs=1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "ganctl: error: trainer.steps=10 sets the run's length, and so does trainer.epochs=1; "
        "accepted: one of trainer.minutes, trainer.steps, trainer.epochs"
    ]
    # null is no length: the recipe's own `trainer.epochs=null` beside the user's steps is fine.
    assert ganctl.compose("ring8", "trainer.steps=10", "trainer.epochs=null").trainer.steps == 10


def test_a_time_budget_on_image_data_records_a_command_that_runs_again():
    """`ganctl inspect` shows a run's command as the recorded overrides, the recipe's in front. The
    recipe's trainer.steps=10000 there beside the user's trainer.minutes made that command one that
    ganctl refuses (two lengths)."""
    typed = ["dataset=folder", "dataset.path=imgs", "trainer.minutes=1"]
    recorded = [*in_front(typed), *typed]
    assert not [a for a in recorded if a.startswith(("trainer.steps=", "trainer.epochs="))]
    cfg = ganctl.compose(None, *recorded)
    assert cfg.trainer.minutes == 1 and cfg.model.arch == "dcgan"
    with pytest.raises(ConfigError, match="trainer.minutes=1 sets the run's length"):
        ganctl.compose(None, *recorded, "trainer.steps=5")


def test_flags_before_the_overrides_keep_the_recipe_and_the_length(tmp_path):
    """The overrides ganctl adds go just before the user's first one: put in front of a leading
    `-m` or `--cfg job`, they split Hydra's positional overrides and argparse refused the command."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train",
        "-m",
        "+experiment=ring8",
        "trainer.epochs=1,2",
        "dataset.samples_per_epoch=1024",
        "trainer.progress=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # 1024 samples in ring8's batches of 512: 2 steps an epoch.
    assert [checkpoint.load(sweep / str(job))["step"] for job in (0, 1)] == [2, 4]
    proc = run_cli("train", "--cfg", "job", "dataset=folder", f"dataset.path={tmp_path}", "trainer.epochs=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    assert {"arch: dcgan", "steps: null", "epochs: 3.0"} <= set(lines), proc.stdout
