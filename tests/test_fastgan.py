"""model=fastgan: shapes from 28 to 256 px, the conditional variant, the size rule, and a real run
at 64 px with R1, augmentation, EMA and bf16 through the CLI."""

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl.cli import main
from ganctl.config import ModelConfig
from ganctl.models import build_models, fastgan, image_side_problem, rows_independent
from ganctl.models.conditional import ClassBatchNorm

from conftest import run_cli

TINY = dict(arch="fastgan", width=2, z_dim=8, g_norm="batch", d_spectral_norm=True)


@pytest.mark.parametrize("side", [28, 32, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(side, channels):
    G, D = build_models(ModelConfig(**TINY), (channels, side, side))
    x = G(torch.randn(2, 8))
    assert x.shape == (2, channels, side, side) and x.abs().max() <= 1  # tanh output
    assert D(x).shape == (2,)
    # Skip-layer excitation into 64, 128 and 256 px maps only, each from the map 16x smaller.
    assert len(G.excite) == sum(side >= r for r in (64, 128, 256))
    assert rows_independent(D)  # ModelConfig's d_norm=none: R1 and the joint real+fake pass per image


def test_conditional_variant():
    """Every batch norm of G becomes class-conditional; D gains the projection head."""
    G, D = build_models(ModelConfig(**TINY, conditional=True), (3, 64, 64), n_classes=3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and m.affine for m in G.modules())
    y = torch.tensor([0, 2])
    z = torch.randn(2, 8)
    G.eval()
    x = G(z, y)
    assert x.shape == (2, 3, 64, 64) and D(x, y).shape == (2,)
    assert torch.equal(x[0], G(z, torch.tensor([1, 2]))[0])  # each class starts at gain 1, bias 0
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, ClassBatchNorm):
                m.bias.weight[1] += 0.5  # as training would move class 1's bias
    assert not torch.equal(x[0], G(z, torch.tensor([1, 2]))[0])


def test_g_norm_none_drops_the_batch_norms():
    G, _ = build_models(ModelConfig(**{**TINY, "g_norm": "none"}), (1, 32, 32))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())


@pytest.mark.parametrize(
    "norm, kind, per_image", [("batch", torch.nn.BatchNorm2d, False), ("layer", torch.nn.GroupNorm, True)]
)
def test_d_norm_is_honoured(norm, kind, per_image):
    """model.d_norm puts a norm after each conv of D's blocks (3 per block, 2 blocks at 32 px);
    none keeps the layout older checkpoints were saved with."""
    _, D = build_models(ModelConfig(**TINY, d_norm=norm), (1, 32, 32))
    assert sum(isinstance(m, kind) for m in D.modules()) == 6
    assert rows_independent(D) == per_image  # batch norm turns the joint real+fake pass off
    _, plain = build_models(ModelConfig(**TINY), (1, 32, 32))
    assert "features.2.main.2.bias" in plain.state_dict()  # none: no norm shifts the layer indices


@pytest.mark.parametrize("norm, kind", [("batch", torch.nn.BatchNorm2d), ("layer", torch.nn.GroupNorm)])
def test_g_norm_is_honoured(norm, kind):
    """model.g_norm puts a norm after G's first transposed conv and each conv of its up-blocks (at
    32 px: 1 + 2 + 1 + 2 = 6); layer was once dropped silently."""
    G, _ = build_models(ModelConfig(**{**TINY, "g_norm": norm}), (1, 32, 32))
    assert sum(isinstance(m, kind) for m in G.modules()) == 6


def test_widths_taper_as_in_the_paper():
    """64 px map `width` channels, doubling per halving up to 16x at 4x4 (FastGAN's nfc table)."""
    assert fastgan._widths(8, 4) == [128, 64, 32, 16, 8]
    assert fastgan._widths(8, 6) == [128, 128, 128, 64, 32, 16, 8]


def test_supported_sides():
    """b x 2^k for a first map b of 4-7 px: the powers of two and MNIST's 28 = 7 x 4."""
    ok = [s for s in range(1, 257) if image_side_problem("fastgan", s) is None]
    assert {28, 32, 64, 128, 256} <= set(ok) and 50 not in ok and 36 not in ok and 6 not in ok


@pytest.mark.parametrize("side", ["50", "6"])
def test_other_resolutions_are_one_line(side, capsys, tmp_path):
    argv = ["train", "dataset=folder", f"dataset.path={tmp_path}", f"dataset.resolution={side}", "model=fastgan"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"ganctl: error: dataset.resolution={side} is invalid") and "128, 256" in err


def test_trains_and_samples_at_64px(tmp_path):
    """The image recipe's pieces together, class-conditional: R1 every update, DiffAugment, G_ema,
    bf16 autocast on CPU."""
    folder = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for i in range(16):
        (folder / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(folder / "ab"[i % 2] / f"{i}.png")
    run = tmp_path / "run"
    proc = run_cli(
        "train",
        "dataset=folder",
        f"dataset.path={folder}",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.resolution=64",
        "dataset.labels=subfolders",
        "model=fastgan",
        "model.conditional=true",
        "model.width=2",
        "loss.r1_gamma=0.05",
        "loss.r1_every=1",
        "trainer.augment=[translation,cutout]",
        "trainer.ema_half_life=100",
        "trainer.precision=bf16",
        "trainer.steps=3",
        "trainer.batch_size=4",
        "trainer.log_every=1",
        "trainer.progress=false",
        "trainer.device=cpu",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        for key in ("d_loss", "g_loss", "grad_norm"):
            assert math.isfinite(float(row[key])), row
    assert float(rows[-1]["grad_norm"]) > 0  # R1 ran: its gradient norm is logged
    proc = run_cli("sample", str(run), "--class", "b", "-n", "4", "-o", str(tmp_path / "x.png"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Image.open(tmp_path / "x.png") as grid:
        assert grid.size == (2 * (64 + 2) + 2,) * 2  # 2 x 2 samples with 2-pixel borders
