"""Data-parallel training on CPU: two gloo processes, one run folder, replicas in agreement."""
import csv
import math

import pytest
import torch

from conftest import compose
from ganctl.training import checkpoint
from ganctl.cli import resume_config
from ganctl.train import run


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["mnist_bce", "svhn_wgan_gp"])
def test_two_process_run_and_single_process_resume(experiment, mnist_root, svhn_root, tmp_path):
    roots = {"mnist_bce": [f"dataset.root={mnist_root}", "dataset.split=test"],
             "svhn_wgan_gp": [f"dataset.root={svhn_root}", "model.width=8", "trainer.epochs=null"]}[experiment]
    cfg = compose(f"+experiment={experiment}", *roots, "trainer.devices=2", "trainer.batch_size=32",
                  "trainer.steps=4", "trainer.log_every=2", "trainer.check_replicas=true", "trainer.progress=false")
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
