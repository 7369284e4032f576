"""Data-parallel training on CPU: two gloo processes, one run folder, replicas in agreement."""

import csv
import math

import pytest
import torch

from ganctl.cli import resume_config
from ganctl.commands.train import run
from ganctl.training import checkpoint

from conftest import compose


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["mnist_bce", "svhn_wgan_gp"])
def test_two_process_run_and_single_process_resume(experiment, mnist_root, svhn_root, tmp_path):
    roots = {
        "mnist_bce": [f"dataset.root={mnist_root}", "dataset.split=test"],
        "svhn_wgan_gp": [f"dataset.root={svhn_root}", "model.width=8", "trainer.epochs=null"],
    }[experiment]
    cfg = compose(
        f"+experiment={experiment}",
        *roots,
        "trainer.devices=2",
        "trainer.batch_size=32",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.check_replicas=true",
        "trainer.progress=false",
    )
    summary = run(cfg, tmp_path / "ddp")  # raises if the replicas' weights ever disagree
    assert summary["steps"] == 4
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    assert [r["step"] for r in rows] == ["2", "4"] and all(math.isfinite(float(r["d_loss"])) for r in rows)
    ckpt_files = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())
    assert ckpt_files == ["last.pt", "step_000004.pt"]  # written once, by rank 0

    ckpt = checkpoint.load(tmp_path / "ddp")
    one, _ = resume_config(ckpt, ["trainer.devices=1", "trainer.steps=6"])
    run(one, tmp_path / "ddp", resume=ckpt)
    resumed = checkpoint.load(tmp_path / "ddp")
    assert resumed["step"] == 6 and all(torch.isfinite(v).all() for v in resumed["G"].values())


def test_global_batch_must_split(capsys):
    from ganctl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "trainer.devices=3", "trainer.batch_size=500"])
    assert exc.value.code == 2 and "multiple of trainer.devices=3" in capsys.readouterr().err


def torchrun(run_dir, *overrides, env=None):
    """`torchrun --nproc_per_node=2 -m ganctl train ...` as README shows it, every rank on one run folder."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:  # torchrun's rendezvous needs a real port (0 hangs it)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        "-m",
        "ganctl",
        "train",
        f"hydra.run.dir={run_dir}",
        "trainer.progress=false",
        *overrides,
    ]
    return subprocess.run(
        cmd,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_torchrun_joins_its_process_group(tmp_path):
    """ganctl under torchrun: the ranks share one run folder, rank 0 writes, gloo on a CPU run."""
    proc = torchrun(
        tmp_path / "tr",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.batch_size=100",
        "trainer.d_steps=2",
        "trainer.g_steps=2",
        "trainer.device=cpu",
        "trainer.check_replicas=true",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "tr" / "metrics.csv")))
    assert [r["step"] for r in rows] == ["2", "4"]
    assert checkpoint.load(tmp_path / "tr")["step"] == 4
