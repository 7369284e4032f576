"""The modern recipe's building blocks (spectral norm, R1, DiffAugment, EMA half-life, the learning
rate schedule) and class-conditional GANs: each changes what it should."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import augment
from ganctl.commands import inspect
from ganctl.commands.train import run
from ganctl.config import RunConfig
from ganctl.ema import EMA
from ganctl.generation import class_columns, class_labels
from ganctl.losses import r1_penalty
from ganctl.models import build_models
from ganctl.models.conditional import ClassBatchNorm
from ganctl.optim import Schedule
from ganctl.training import checkpoint

from conftest import compose, run_cli


def dcgan_config(**fields) -> RunConfig:
    cfg = RunConfig()
    cfg.model.arch, cfg.model.width, cfg.model.z_dim = "dcgan", 8, 16
    for key, value in fields.items():
        setattr(cfg.model, key, value)
    return cfg


def top_singular_value(weight: torch.Tensor) -> float:
    # torch's spectral norm normalises the weight flattened to (out channels, everything else)
    return float(torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2))


def test_spectral_norm_bounds_each_d_layer_near_one():
    torch.manual_seed(0)
    _, plain = build_models(dcgan_config().model, (1, 28, 28))
    torch.manual_seed(0)
    _, D = build_models(dcgan_config(d_spectral_norm=True).model, (1, 28, 28))
    x = torch.randn(8, 1, 28, 28)
    for _ in range(60):  # each training-mode forward runs one power iteration per layer
        D(x)
    layers = [m for m in D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == 4  # three convolutions and the linear head
    for layer in layers:
        # 60 power iterations on matrices this small reach the top singular value to well under 1%;
        # 0.02 leaves room for the float32 estimate, and is far from the raw layers' values below
        assert top_singular_value(layer.weight) == pytest.approx(1.0, abs=0.02)
    raw = [top_singular_value(m.weight) for m in plain.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(abs(s - 1.0) > 0.1 for s in raw)


def test_r1_is_zero_for_a_constant_d_and_the_squared_slope_of_a_linear_one():
    real = torch.randn(16, 1, 4, 4)
    r1, norm = r1_penalty(lambda x: x.sum(dim=(1, 2, 3)) * 0 + 3.0, real)
    assert float(r1) == 0.0 and float(norm) == 0.0
    w = torch.randn(1, 1, 4, 4, requires_grad=True)
    r1, norm = r1_penalty(lambda x: (x * w).sum(dim=(1, 2, 3)), real)
    # D(x) = <w, x> has gradient w at every x: E|grad|^2 = |w|^2 up to float32 rounding
    assert float(r1.detach()) == pytest.approx(float(w.detach().square().sum()), rel=1e-5)
    assert float(norm) == pytest.approx(float(w.detach().norm()), rel=1e-5)
    r1.backward()  # R1 trains D: through create_graph its gradient reaches D's weights, d|w|^2/dw = 2w
    assert torch.allclose(w.grad, 2 * w.detach(), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(augment.AUGMENTS))
def test_each_augmentation_keeps_shapes_moves_pixels_and_replays_for_a_seed(name):
    x = torch.rand(32, 3, 16, 16) * 2 - 1
    fn = augment.AUGMENTS[name]
    torch.manual_seed(1)
    a = fn(x)
    torch.manual_seed(1)
    b = fn(x)
    torch.manual_seed(2)
    c = fn(x)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, x) and not torch.equal(a, c)
    leaf = x.clone().requires_grad_(True)
    fn(leaf).square().sum().backward()  # differentiable: G learns through D's augmented view
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_translation_shifts_whole_images_and_fills_with_zeros():
    x = torch.arange(1, 1 + 2 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    torch.manual_seed(0)
    out = augment.translation(x, ratio=0.25)
    for i in range(2):
        kept = out[i, 0][out[i, 0] != 0]
        # Every kept pixel comes from the image, and rows keep their order (a shift, not a shuffle).
        assert set(kept.tolist()) <= set(x[i, 0].flatten().tolist())
        assert torch.all(kept.diff() > 0)


def test_cutout_zeroes_a_square_of_half_the_side():
    x = torch.ones(64, 1, 8, 8)
    torch.manual_seed(0)
    zeros = (augment.cutout(x) == 0).flatten(1).sum(1)
    # A 4x4 square, cut by the border when its centre lies near it.
    assert zeros.max() == 16 and zeros.min() >= 4
    assert augment.policy([]) is None
    assert augment.policy(["cutout", "translation"])(x).shape == x.shape


def test_ema_half_life_halves_the_distance_every_half_life_of_images():
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, half_life=640, batch=64)
    torch.nn.init.ones_(net.weight)
    for _ in range(10):  # 10 updates of 64 images = one half-life
        ema.update(net)
    # 1 - beta^10 with beta = 0.5 ** 0.1: ten float32 lerps, each off by ~1e-7 at most
    assert float(ema.model.weight) == pytest.approx(0.5, abs=1e-5)
    warm = EMA(net, half_life=640, warmup=0.05, batch=64)
    betas = []
    for _ in range(3):
        warm.update(net)
        betas.append(0.5 ** (64 / min(640, warm.updates * 64 * 0.05)))
    # The warm-up shortens the half-life while few images have been seen: a fast start
    assert betas[0] < betas[1] < betas[2] < ema.beta()


def test_linear_schedule_decays_to_zero_from_its_start():
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    cfg = RunConfig().optim
    cfg.schedule, cfg.decay_start = "linear", 0.5
    s = Schedule(cfg, 10, [opt])
    assert [s.factor(k) for k in (0, 4, 5, 6, 9)] == pytest.approx([1, 1, 1, 0.8, 0.2])
    s.apply(9)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)
    cfg.schedule = "constant"
    assert Schedule(cfg, 10, [opt]).factor(9) == 1.0


def test_conditional_g_draws_by_label_and_d_scores_by_label():
    torch.manual_seed(0)
    G, D = build_models(dcgan_config(conditional=True).model, (1, 28, 28), n_classes=10)
    G.eval()
    z = torch.randn(1, 16).expand(10, 16)
    x = G(z, torch.arange(10))
    assert x.shape == (10, 1, 28, 28)
    assert (x[1:] - x[0]).abs().flatten(1).amax(1).min() > 1e-4  # one latent, ten different images
    scores = D(x[:1].expand(10, -1, -1, -1), torch.arange(10))
    assert scores.unique().numel() == 10
    # With batch norm in G the class sets each norm's gain and bias, and z alone is G's input.
    G, _ = build_models(dcgan_config(conditional=True, g_norm="batch").model, (1, 28, 28), n_classes=10)
    cbn = [m for m in G.modules() if isinstance(m, ClassBatchNorm)]
    assert len(cbn) == 2 and G.embed is None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and m.affine for m in G.modules())
    G.train()
    y = torch.tensor([3, 3, 5, 5])
    with torch.no_grad():
        for m in cbn:
            m.gain.weight.normal_()  # as if trained: classes with different gains
        out = G(torch.randn(4, 16), y)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])
    with pytest.raises(ValueError):
        build_models(dcgan_config(conditional=True).model, (1, 28, 28))


def test_class_grids_give_each_class_whole_rows():
    # 10 classes x 10 samples: one row each; 2 classes x 32: 8 columns, 4 rows each; 7 a class: 7 columns
    assert [class_columns(100, 10), class_columns(64, 2), class_columns(70, 10)] == [10, 8, 7]
    labels = class_labels(64, 2).view(-1, class_columns(64, 2))
    assert all(row.unique().numel() == 1 for row in labels)  # no row mixes two classes


RECIPE_SHORT = ["trainer.steps=4", "model.width=8", "trainer.progress=false", "trainer.log_every=2"]


def test_mnist_best_trains_on_real_data_and_samples(mnist_root, tmp_path):
    cfg = compose("+experiment=mnist_best", f"dataset.root={mnist_root}", "dataset.split=test", *RECIPE_SHORT)
    # The recipe's choices are on: a regression here would silently train a plain DCGAN.
    assert cfg.model.d_spectral_norm and cfg.loss.r1_gamma > 0 and cfg.trainer.augment
    assert cfg.trainer.ema_half_life is not None and cfg.optim.schedule == "linear"
    result = run(cfg, tmp_path / "run")
    assert math.isfinite(result["d_loss"]) and math.isfinite(result["g_loss"])
    header, *rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert "grad_norm" in header.split(",")  # R1's gradient norm on real images
    ckpt = checkpoint.load(tmp_path / "run")
    assert ckpt["G_ema"] is not None
    # The last update used the linear decay's rate: factor 1 - (3 - 2) / 2 at step 3 of 4
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(cfg.optim.lr * 0.5)
    out = tmp_path / "s.png"
    assert run_cli("sample", str(tmp_path / "run"), "-n", "16", "-o", str(out)).returncode == 0
    assert Image.open(out).size == (4 * 28 + 5 * 2, 4 * 28 + 5 * 2)


@pytest.fixture(scope="module")
def conditional_run(mnist_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cond") / "run"
    cfg = compose(
        "+experiment=mnist_best",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "model.conditional=true",
        "trainer.num_samples=20",
        *RECIPE_SHORT,
    )
    run(cfg, folder)
    return folder


def test_conditional_run_keeps_class_names_and_grids_one_row_per_class(conditional_run):
    ckpt = checkpoint.load(conditional_run)
    assert ckpt["classes"] == [str(d) for d in range(10)]
    assert ckpt["fixed_y"].tolist() == [d for d in range(10) for _ in range(2)]
    grid = Image.open(conditional_run / "samples" / "step_000004.png")
    assert grid.size == (2 * 28 + 3 * 2, 10 * 28 + 11 * 2)  # 10 rows (classes) of 2
    assert "class labels: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in inspect.render(inspect.describe(str(conditional_run)))


def test_sample_class_asks_one_class_and_names_valid_ones(conditional_run, tmp_path):
    out = tmp_path / "threes.npz"
    assert run_cli("sample", str(conditional_run), "--class", "3", "-n", "6", "-o", str(out)).returncode == 0
    threes = np.load(out)["arr_0"]
    four = run_cli("sample", str(conditional_run), "--class", "4", "-n", "6", "-o", str(tmp_path / "fours.npz"))
    assert four.returncode == 0, four.stderr
    fours = np.load(tmp_path / "fours.npz")["arr_0"]
    assert threes.shape == (6, 28, 28) and not np.array_equal(threes, fours)  # same latents, other class
    bad = run_cli("sample", str(conditional_run), "--class", "12", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2
    assert "class '12' is not a class of this generator; accepted: 0..9" in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_class_on_an_unconditional_generator_is_one_clear_error(mnist_run, tmp_path):
    bad = run_cli("sample", str(mnist_run), "--class", "3", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "not class-conditional" in bad.stderr and "Traceback" not in bad.stderr


def test_conditional_needs_labels(tmp_path):
    bad = run_cli("train", "model.conditional=true", "trainer.steps=1", f"hydra.run.dir={tmp_path}/r")
    assert bad.returncode == 2
    assert "model.conditional=True is invalid" in bad.stderr and "no class labels" in bad.stderr
