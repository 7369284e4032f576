"""G_ema: the closed form on a constant parameter sequence, and exact restore on resume."""

import pytest
import torch
from torch import nn

from ganctl.cli import resume_config
from ganctl.commands.train import run
from ganctl.ema import EMA
from ganctl.training import checkpoint

from conftest import compose, straight_and_resumed


def test_closed_form_for_constant_weights():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias.fill_(-1.0)
    k = 7
    for _ in range(k):
        ema.update(model)
    for name, target in (("weight", 2.0), ("bias", -1.0)):
        expected = 0.9**k * start[name] + (1 - 0.9**k) * target
        assert torch.allclose(ema.model.state_dict()[name], expected, atol=1e-6)
    assert all(not p.requires_grad for p in ema.model.parameters())


def test_ema_in_checkpoint_and_resume(mnist_root, tmp_path):
    base = [
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.ema=0.9",
        "trainer.progress=false",
        "trainer.log_every=2",
        "model.g_hidden=[32]",
        "model.d_hidden=[32]",
    ]
    ckpt, _ = straight_and_resumed(base, 3, 6, tmp_path)
    assert ckpt["G_ema"] is not None
    assert any(not torch.equal(ckpt["G_ema"][k], ckpt["G"][k]) for k in ckpt["G"])
    a, b = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    for key, value in a["G_ema"].items():
        assert torch.equal(value, b["G_ema"][key])


def test_bad_decay(capsys):
    from ganctl.cli import main

    with pytest.raises(SystemExit):
        main(["train", "trainer.ema=1.5"])
    assert "trainer.ema=1.5" in capsys.readouterr().err


def test_eval_during_training_keeps_best_checkpoint(tmp_path):
    """trainer.eval_every logs W1 for the 1-D Gaussian and keeps checkpoints/best.pt at its minimum."""
    import csv

    base = [
        "trainer.log_every=10",
        "trainer.eval_every=10",
        "trainer.eval_samples=2000",
        "trainer.progress=false",
        "dataset.samples_per_epoch=5000",
    ]
    run(compose(*base, "trainer.steps=30"), tmp_path / "e")
    rows = list(csv.DictReader(open(tmp_path / "e" / "metrics.csv")))
    w1 = [float(r["w1"]) for r in rows]
    best = checkpoint.load(tmp_path / "e" / "checkpoints" / "best.pt")
    assert best["best_metric"] == pytest.approx(min(w1))
    assert best["step"] == 10 * (w1.index(min(w1)) + 1)
    ckpt = checkpoint.load(tmp_path / "e")
    cfg, _ = resume_config(ckpt, ["trainer.steps=40"])
    run(cfg, tmp_path / "e", resume=ckpt)
    assert checkpoint.load(tmp_path / "e")["best_metric"] <= min(w1)
