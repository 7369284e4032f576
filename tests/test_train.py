"""The training loop in-process: determinism, learning, and what a run writes."""

import csv
import math

import pytest
import torch

from ganctl.commands.train import run
from ganctl.training import checkpoint

from conftest import compose


def mnist_cfg(mnist_root, *overrides):
    return compose(
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.progress=false",
        "trainer.device=cpu",
        *overrides,
    )


def test_same_seed_same_weights_different_seed_different(mnist_root, tmp_path):
    results = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        cfg = mnist_cfg(mnist_root, "trainer.steps=6", "trainer.log_every=3", f"seed={seed}")
        run(cfg, tmp_path / name)
        results[name] = checkpoint.load(tmp_path / name)
    for net in ("G", "D"):
        for key, value in results["a"][net].items():
            assert torch.equal(value, results["b"][net][key]), f"{net}.{key} differs for the same seed"
    assert any(not torch.equal(v, results["c"]["G"][k]) for k, v in results["a"]["G"].items())


def test_gaussian_default_learns_toward_target(tmp_path):
    """After a short run the generated mean is much closer to 4.0 than the untrained generator's."""
    from ganctl.models import build_models

    cfg = compose("trainer.steps=150", "trainer.log_every=50", "trainer.progress=false", "trainer.device=cpu")
    summary = run(cfg, tmp_path / "g")
    ckpt = checkpoint.load(summary["last_checkpoint"])
    z = ckpt["fixed_z"]
    torch.manual_seed(cfg.seed)  # run() builds its untrained generator right after this seed
    G0, _ = build_models(cfg.model, (1,))
    G1, _ = build_models(cfg.model, (1,))
    G1.load_state_dict(ckpt["G"])
    with torch.no_grad():
        before, after = G0(z).mean().item(), G1(z).mean().item()
    assert abs(after - 4.0) < 0.5 * abs(before - 4.0), (before, after)
    rows = list(csv.DictReader(open(tmp_path / "g" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [50, 100, 150]
    assert all(math.isfinite(float(r["fake_mean"])) for r in rows)


@pytest.mark.parametrize(
    "experiment, extra",
    [
        ("mnist_vanilla", []),
        ("mnist_goodfellow", []),
    ],
)
def test_mnist_experiments_train(mnist_root, tmp_path, experiment, extra):
    cfg = compose(
        f"+experiment={experiment}",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.progress=false",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.epochs=null",
        *extra,
    )
    summary = run(cfg, tmp_path / experiment)
    assert summary["steps"] == 4 and math.isfinite(summary["d_loss"]) and math.isfinite(summary["g_loss"])
    assert (tmp_path / experiment / "samples" / "step_000004.png").is_file()


def test_svhn_wgan_gp_trains_on_generated_files(svhn_root, tmp_path):
    cfg = compose(
        "+experiment=svhn_wgan_gp",
        f"dataset.root={svhn_root}",
        "trainer.progress=false",
        "trainer.steps=3",
        "trainer.log_every=1",
        "trainer.epochs=null",
        "model.width=16",
        "trainer.batch_size=16",
    )
    run(cfg, tmp_path / "svhn")
    rows = list(csv.DictReader(open(tmp_path / "svhn" / "metrics.csv")))
    assert len(rows) == 3 and all(math.isfinite(float(r["grad_norm"])) for r in rows)
    assert float(rows[0]["epoch"]) == pytest.approx(5 / 16)  # 5 critic batches of 16 out of 256 images
    from PIL import Image

    grid = Image.open(tmp_path / "svhn" / "samples" / "step_000003.png")
    assert grid.mode == "RGB" and grid.size == (8 * 34 + 2, 8 * 34 + 2)


def test_epochs_define_steps(mnist_root, tmp_path):
    """trainer.epochs counts real batches: 0.02 epochs of 156 batches (10k / 64) is 4 steps."""
    cfg = mnist_cfg(mnist_root, "trainer.epochs=0.02", "trainer.log_every=2")
    assert run(cfg, tmp_path / "e")["steps"] == math.ceil(0.02 * 156)
