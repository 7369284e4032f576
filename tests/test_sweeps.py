"""Sweeps: every job in its folder, a summary that lists failures, and `ganctl report`."""

import csv

import pytest
from PIL import Image

from conftest import run_cli


def test_sweep_with_a_failing_job_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train",
        "-m",
        "optim.lr=1e-3,2e-3,5e-3,-1",
        "trainer.steps=10",
        "trainer.log_every=5",
        "trainer.progress=false",
        "dataset.samples_per_epoch=5000",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()) == ["0", "1", "2", "3"]
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["status"] for r in rows].count("ok") == 3
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1 and "optim.lr=-1" in failed[0]["overrides"] and "learning rate > 0" in failed[0]["error"]
    for r in rows:
        if r["status"] == "ok":
            assert r["steps"] == "10" and float(r["d_loss"]) > 0 and r["last_checkpoint"].endswith("last.pt")
    assert "| error |" in (sweep / "summary.md").read_text()

    (sweep / "summary.csv").unlink()
    rebuilt = run_cli("report", str(sweep))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert len(list(csv.DictReader(open(sweep / "summary.csv")))) == 4
    sheet, curves = Image.open(sweep / "contact_sheet.png"), Image.open(sweep / "curves.png")
    assert sheet.width > 4 * 200 and curves.height > 300


def test_report_rejects_a_folder_without_jobs(tmp_path):
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "not a sweep folder" in proc.stderr


def test_hydra_config_composes():
    """The Hydra config with the sweep callback composes."""
    proc = run_cli("train", "--cfg", "hydra")
    assert proc.returncode == 0, proc.stderr
    assert "ganctl.sweep_callback.SweepSummary" in proc.stdout


def test_launcher_configs_compose():
    for launcher, needle in (("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")):
        proc = run_cli("train", f"hydra/launcher={launcher}", "--cfg", "hydra")
        assert proc.returncode == 0, proc.stderr
        assert needle in proc.stdout


def test_job_function_pickles():
    """submitit and joblib ship the task function to another process: it must pickle."""
    import pickle

    from ganctl.launch.task import TrainTask

    task = TrainTask(overwrite=True)
    assert pickle.loads(pickle.dumps(task)) == task


def test_joblib_sweep_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.progress=false",
        "dataset.samples_per_epoch=5000",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_resume_auto_continues_the_folder(tmp_path):
    run_dir = tmp_path / "job"
    common = [
        "trainer.log_every=2",
        "trainer.progress=false",
        "dataset.samples_per_epoch=5000",
        f"hydra.run.dir={run_dir}",
        "resume=auto",
    ]
    first = run_cli("train", "trainer.steps=2", *common)
    assert first.returncode == 0, first.stderr
    again = run_cli("train", "trainer.steps=4", *common)
    assert again.returncode == 0, again.stderr
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [r["step"] for r in rows] == ["2", "4"]


def test_optuna_study_minimises_the_returned_evaluation_metric(tmp_path):
    """hparams_search=gaussian1d_optuna: each trial returns its final W1; Optuna's best is the smallest."""
    import yaml

    sweep = tmp_path / "study"
    proc = run_cli(
        "train",
        "-m",
        "hparams_search=gaussian1d_optuna",
        "hydra.sweeper.n_trials=3",
        "optim.lr=tag(log, interval(1e-3, 0.3))",
        "trainer.steps=40",
        "trainer.log_every=20",
        "trainer.eval_every=20",
        "trainer.eval_samples=500",
        "trainer.d_steps=2",
        "trainer.g_steps=2",
        "trainer.progress=false",
        "dataset.samples_per_epoch=5000",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len(rows) == 3 and all(r["status"] == "ok" and r["metric"] == "w1" for r in rows)
    # Each trial's value is the W1 of its own last metrics.csv row, and the study picked the smallest.
    finals = {}
    for job in ("0", "1", "2"):
        last = list(csv.DictReader(open(sweep / job / "metrics.csv")))[-1]
        assert last["step"] == "40"
        finals[job] = float(last["w1"])
    assert len({round(v, 6) for v in finals.values()}) == 3  # the sampled learning rates made a difference
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(min(finals.values()), rel=1e-6)
    assert 1e-3 <= result["best_params"]["optim.lr"] <= 0.3
    assert rows[0]["job"] == min(finals, key=finals.get)  # summary sorted by the metric, best first


def test_optuna_without_evaluation_stops_with_one_line(tmp_path):
    proc = run_cli(
        "train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=1",
        "trainer.steps=4",
        f"hydra.sweep.dir={tmp_path / 'study'}",
    )
    assert proc.returncode == 2
    assert "trainer.eval_every=null" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "study").glob("*/checkpoints"))
