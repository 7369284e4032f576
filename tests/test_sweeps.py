"""Sweeps: every job in its folder, a summary that lists failures, and `ganctl report`."""
import csv

from PIL import Image

from conftest import run_cli


def test_sweep_with_a_failing_job_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "optim.lr=1e-3,2e-3,5e-3,-1", "trainer.steps=10", "trainer.log_every=5",
                   "trainer.progress=false", "dataset.samples_per_epoch=5000", f"hydra.sweep.dir={sweep}")
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
    assert "ganctl.report.SweepSummary" in proc.stdout


def test_launcher_configs_compose():
    for launcher, needle in (("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")):
        proc = run_cli("train", f"hydra/launcher={launcher}", "--cfg", "hydra")
        assert proc.returncode == 0, proc.stderr
        assert needle in proc.stdout


def test_job_function_pickles():
    """submitit and joblib ship the task function to another process: it must pickle."""
    import pickle

    from ganctl import cli

    assert pickle.loads(pickle.dumps(cli._train_task)) is cli._train_task


def test_joblib_sweep_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                   "trainer.steps=4", "trainer.log_every=2", "trainer.progress=false",
                   "dataset.samples_per_epoch=5000", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_resume_auto_continues_the_folder(tmp_path):
    run_dir = tmp_path / "job"
    common = ["trainer.log_every=2", "trainer.progress=false", "dataset.samples_per_epoch=5000",
              f"hydra.run.dir={run_dir}", "resume=auto"]
    first = run_cli("train", "trainer.steps=2", *common)
    assert first.returncode == 0, first.stderr
    again = run_cli("train", "trainer.steps=4", *common)
    assert again.returncode == 0, again.stderr
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [r["step"] for r in rows] == ["2", "4"]
