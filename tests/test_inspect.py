"""ganctl inspect and ganctl --version, through the real CLI."""

import json
import re
from pathlib import Path

from conftest import REPO, run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def test_inspect_a_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "train",
        "trainer.steps=20",
        "trainer.log_every=10",
        "trainer.ema=0.9",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
        "optim.lr=0.002",
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("inspect", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "step 20" in text and "EMA generator: yes" in text
    assert "command: ganctl train trainer.steps=20" in text
    assert "optim.lr = 0.002" in text  # a value that differs from the schema's default
    assert "parameters G 46, D 171" in text  # setup 002's 1-5-5-1 G and 4-10-10-1 D
    assert "last metrics row: step 20" in text
    # The suite's GANCTL_AUTOTUNE=off: the plain path, at the process's thread count.
    assert "fast path: backward=autograd, channels_last=false, precision=fp32 (picked on cpu)" in text

    info = json.loads(run_cli("inspect", str(run_dir), "--json").stdout)
    assert info["step"] == 20 and info["ema"] is True and info["parameters"] == {"G": 46, "D": 171}
    assert info["changed"]["optim.lr"] == 0.002 and info["last_metrics"]["step"] == "20"
    assert info["fast_path"] == {
        "device": "cpu",
        "backward": "autograd",
        "channels_last": False,
        "precision": "fp32",
        "threads": None,
    }


def test_inspect_an_old_checkpoint_and_a_bad_path(tmp_path):
    proc = run_cli("inspect", str(FIXTURES / "v1_mnist_mlp.pt"))
    assert proc.returncode == 0 and "checkpoint format 1" in proc.stdout and "mnist (test)" in proc.stdout
    proc = run_cli("inspect", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and proc.stderr.startswith("ganctl: error:") and len(proc.stderr.splitlines()) == 1


def test_version_matches_the_package_metadata():
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"ganctl {version}"
    assert (REPO / "CHANGELOG.md").read_text().count(f"## {version}") == 1
