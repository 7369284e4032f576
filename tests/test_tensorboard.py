"""trainer.loggers=[csv,tensorboard]: the event files hold every metrics row, the sample pictures,
the 1-D histograms and the config, and a resumed run continues the same curves."""

import csv

import pytest

from conftest import run_cli

pytest.importorskip("tensorboard")  # the dev install carries it; the extra is ganctl[tensorboard]


def events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_event_files_hold_the_run_and_continue_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    common = ["trainer.log_every=5", "trainer.sample_every=10", "trainer.progress=false", "trainer.ckpt_every=10"]
    proc = run_cli(
        "train", "trainer.steps=20", *common, "trainer.loggers=[csv,tensorboard]", f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 0, proc.stderr
    acc = events(run_dir)
    tags = acc.Tags()
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    # Every metrics row, value for value.
    d_loss = acc.Scalars("d_loss")
    assert [e.step for e in d_loss] == [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert [e.value for e in d_loss] == pytest.approx([float(r["d_loss"]) for r in rows], rel=1e-6)
    # metrics.csv's columns, no more: this run has no penalty, so no grad_norm curve.
    assert set(tags["scalars"]) == set(rows[0]) - {"step"}
    assert [e.step for e in acc.Images("samples")] == [10, 20]
    assert [e.step for e in acc.Histograms("samples/values")] == [10, 20]
    assert "config" in str(tags.get("tensors", [])) + str(tags.get("text", []))

    # An interrupted run that logged past its checkpoint: the resumed curve continues from there.
    proc = run_cli(
        "train", f"resume={run_dir / 'checkpoints' / 'step_000010.pt'}", "trainer.steps=30", f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 0, proc.stderr
    steps = [e.step for e in events(run_dir).Scalars("d_loss")]
    assert steps == [5, 10, 15, 20, 25, 30], steps


def test_tensorboard_without_the_package_is_one_line(tmp_path):
    """A stand-in `tensorboard` that cannot be imported plays the machine without the package."""
    fake = tmp_path / "fake"
    (fake / "tensorboard").mkdir(parents=True)
    (fake / "tensorboard" / "__init__.py").write_text("raise ImportError('no tensorboard here')\n")
    import os

    proc = run_cli(
        "train",
        "trainer.loggers=[csv,tensorboard]",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ganctl: error: trainer.loggers includes tensorboard, but the tensorboard package is not installed; "
        "accepted: pip install 'ganctl[tensorboard]', or trainer.loggers=[csv]"
    ]
    assert not (tmp_path / "run").exists()
