"""trainer.backward=manual (hand-written MLP gradients) trains the same weights as autograd."""

import pytest
import torch
from test_steps import SETUPS

from ganctl.commands.train import run
from ganctl.errors import ConfigError
from ganctl.losses import LOSSES
from ganctl.training import checkpoint

from conftest import compose

BASE = ["trainer.log_every=5", "trainer.progress=false", "trainer.device=cpu"]


def trained(mnist_root, tmp_path, name, *extra, steps=5):
    """G's and D's weights, and the metrics rows, after `steps` steps of mnist_bce on the test split."""
    cfg = compose(
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        *BASE,
        f"trainer.steps={steps}",
        *extra,
    )
    run(cfg, tmp_path / name)
    ckpt = checkpoint.load(tmp_path / name)
    rows = (tmp_path / name / "metrics.csv").read_text().splitlines()
    return ckpt["G"], ckpt["D"], (ckpt["opt_g"], ckpt["opt_d"]), rows


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# Each step's gradients agree to fp32 rounding (test_steps.py; both within 1e-6 of float64 at
# every one of setup 001's first 10 steps), but whole runs part once a unit's pre-activation sits
# within rounding of zero: on an Intel Xeon, at step 3, one of D's LeakyReLU inputs came out
# -1.3e-8 in one run and +5.6e-9 in the other, so one row's gradient took slope 0.2 in one and 1
# in the other, and Adam, which moves a weight by ~lr whatever its gradient's size, turned that
# into lr-sized weight differences that feed every later step. Compared entry by entry, moments
# near zero then differ by 0.3-3% (far past rtol 1e-3); as a share of each tensor's norm they
# differ by 5e-3 after 10 steps (2e-7 where no gate flips). A wrong gradient (a missing factor, a
# sign) moves that share by 50% or more.
MOMENTS_PART = 2e-2


def assert_same_training(mnist_root, tmp_path, *extra, steps=5, tol=None):
    """Both steps train the same weights. One phase's gradients are compared exactly in
    test_steps.py; here whole runs are, through what the optimisers accumulated.

    `tol` bounds the weights' difference. By default (Adam) it is 2 x lr per step: Adam moves a
    weight by about lr x the sign of its averaged gradient, so where a gradient is near zero two
    float orders can move it in opposite directions; the moments below carry the gradient check.
    """
    g_m, d_m, opt_m, rows_m = trained(mnist_root, tmp_path, "manual", "trainer.backward=manual", *extra, steps=steps)
    g_a, d_a, opt_a, rows_a = trained(
        mnist_root, tmp_path, "autograd", "trainer.backward=autograd", *extra, steps=steps
    )
    if tol is None:
        tol = 2 * opt_a[0]["param_groups"][0]["lr"] * steps
    assert max_diff(g_m, g_a) < tol
    assert max_diff(d_m, d_a) < tol
    # Adam's step hardly depends on the gradient's scale, its moments do: both optimisers saw the
    # same gradients, up to MOMENTS_PART of each moment tensor's norm (see there).
    for net_m, net_a in zip(opt_m, opt_a):
        for sm, sa in zip(net_m["state"].values(), net_a["state"].values()):
            for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
                if key in sm:
                    part = ((sm[key] - sa[key]).norm() / sa[key].norm()).item()
                    assert part < MOMENTS_PART, (key, part)
    # And the logged losses and D(x), D(G(z)) agree: weights that differ by up to the bound above
    # are those whose gradient is near zero, which by that token hardly move the loss.
    for rm, ra in zip(rows_m[1:], rows_a[1:]):
        vm, va = rm.split(","), ra.split(",")
        for col in (2, 3, 4, 5):
            assert abs(float(vm[col]) - float(va[col])) < 1e-3 * max(1.0, abs(float(va[col]))), (rm, ra)


def test_setup_001_manual_matches_autograd(mnist_root, tmp_path):
    """Setup 001's full-size model: oneDNN products with fused tanh / leaky ReLU."""
    assert_same_training(mnist_root, tmp_path, steps=10)


def test_small_model_manual_matches_autograd(mnist_root, tmp_path):
    """Layers below oneDNN's size threshold take the BLAS route; sigmoid output, ReLU D (setup 000's)."""
    assert_same_training(mnist_root, tmp_path, *SETUPS["small_blas_sizes"])


def test_several_d_and_g_updates_per_step(mnist_root, tmp_path):
    """d_steps=2, g_steps=2: the first G update reuses the shared forward pass, the second draws anew."""
    assert_same_training(
        mnist_root,
        tmp_path,
        "model.g_hidden=[48]",
        "model.d_hidden=[48]",
        "trainer.d_steps=2",
        "trainer.g_steps=2",
        "loss=minimax",
    )


def test_dropout_and_shuffled_batch_as_setup_004(mnist_root, tmp_path):
    """Setup 004's D: dropout after each hidden layer (in both phases) and one shuffled batch.
    Both paths draw the same masks and permutation: G's two passes stay separate here."""
    assert_same_training(mnist_root, tmp_path, *SETUPS["dropout_shuffled"])


def test_dropout_with_separate_batches(mnist_root, tmp_path):
    assert_same_training(
        mnist_root,
        tmp_path,
        "model.g_hidden=[48]",
        "model.d_hidden=[48,32]",
        "model.d_dropout=0.5",
        "trainer.d_steps=2",
    )


@pytest.mark.parametrize("name", ["hinge", "lsgan"])
def test_losses_without_closed_form(name, mnist_root, tmp_path):
    assert_same_training(mnist_root, tmp_path, "model.g_hidden=[48]", "model.d_hidden=[48]", f"loss={name}")


def test_sgd_where_steps_scale_with_the_gradient(mnist_root, tmp_path):
    """Plain SGD moves each weight by lr x its gradient: a gradient off by any factor shows. The
    gradients agree to ~1e-4 of their largest entry (test_steps.py), which is below 1e-2 here, so
    5 steps at lr 0.5 keep the weights within 5 x 0.5 x 1e-6 plus what those differences feed
    back: 1e-5."""
    assert_same_training(
        mnist_root,
        tmp_path,
        "model.g_hidden=[48]",
        "model.d_hidden=[48]",
        "optim=sgd",
        "optim.momentum=0",
        "optim.lr=0.5",
        tol=1e-5,
    )


def test_blas_route_for_every_layer(mnist_root, tmp_path):
    assert_same_training(mnist_root, tmp_path, "trainer.cpu_matmul=blas")


@pytest.mark.parametrize("name", ["bce", "minimax"])
def test_closed_form_score_gradients_match_autograd(name):
    """The manual step's closed forms for the BCE-type losses against autograd on the scores."""
    from ganctl.training import manual_step

    loss = LOSSES[name]
    torch.manual_seed(0)
    real, fake = torch.randn(64) * 3, torch.randn(48) * 3
    got = manual_step.ScoreGrads(loss)(torch.cat([real, fake]).unsqueeze(1), 64)
    r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
    want = (loss.d(r, f).detach(), torch.cat(torch.autograd.grad(loss.d(r, f), (r, f))).unsqueeze(1))
    # The loss is one weighted sum instead of two means: 112 softplus terms of up to ~10 added in
    # another order differ by a few ulps of the total (~1e-6 relative). Each gradient entry is one
    # sigmoid and one product either way: a few ulps of its own value.
    assert torch.allclose(got[0], want[0], rtol=1e-6)
    assert torch.allclose(got[1], want[1], atol=1e-7)
    got = manual_step.score_grad(loss, fake.unsqueeze(1))
    f = fake.clone().requires_grad_()
    want = (loss.g(f).detach(), torch.autograd.grad(loss.g(f), (f,))[0].unsqueeze(1))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-7)


def test_batch_moments_backward_equals_autograd():
    """Setup 002's moments row and its hand-written backward against autograd through
    BatchMoments, in float64 so that any difference beyond ~1e-12 is a wrong formula, not rounding."""
    from ganctl.models.mlp import BatchMoments
    from ganctl.training import manual_step

    torch.manual_seed(0)
    x = torch.distributions.Gamma(2.0, 1.0).sample((500, 1)).double()
    g = torch.randn(4, dtype=torch.float64)
    row, saved = manual_step.Moments().forward(x)
    xa = x.clone().requires_grad_()
    want_row = BatchMoments()(xa)
    (want_grad,) = torch.autograd.grad(want_row[0] @ g, xa)
    assert torch.allclose(row, want_row.detach(), rtol=1e-12, atol=1e-12)
    grad = manual_step.Moments.backward(g, saved)
    assert grad.shape == x.shape
    assert torch.allclose(grad, want_grad, rtol=1e-10, atol=1e-12 * want_grad.abs().max().item())
    # Both batches of a D phase as two columns give the rows each gives alone.
    y = torch.randn(500, 1, dtype=torch.float64) * 2 + 4
    rows = manual_step.moment_rows(torch.cat([x, y], 1))
    assert torch.allclose(rows, torch.cat([BatchMoments()(x), BatchMoments()(y)]), rtol=1e-12, atol=1e-12)


def candidates(*overrides, world=1, fast=None, conv=False):
    """The (backward, channels_last) combinations `auto` times for a config, and its pick
    when `fast` is the one combination whose trial is cheap."""
    import time

    from ganctl.training import fast_paths

    seen = []

    def trial(paths):
        combo = (paths.backward, paths.channels_last)
        seen.append(combo)
        return lambda: time.sleep(0 if combo == fast else 0.003)

    pick, _ = fast_paths.choose(compose(*overrides), torch.device("cpu"), world, conv, trial, {"o": overrides})
    return set(seen), (pick.backward, pick.channels_last)


def test_auto_times_manual_only_where_supported(monkeypatch, tmp_path):
    monkeypatch.setenv("GANCTL_AUTOTUNE", "fresh")
    monkeypatch.setenv("GANCTL_CACHE", str(tmp_path))
    both = {("autograd", False), ("manual", False)}
    for experiment in ("mnist_bce", "mnist_vanilla", "mnist_goodfellow", "gaussian1d"):
        assert candidates(f"+experiment={experiment}")[0] == both  # dropout, shuffled batch, moments too
    assert candidates("+experiment=mnist_bce", "model.d_act=elu") == (set(), ("autograd", False))
    # The manual step is fp32 only: under bf16 there is one path, so nothing is timed.
    assert candidates("+experiment=mnist_bce", "trainer.precision=bf16") == (set(), ("autograd", False))
    assert candidates("+experiment=mnist_bce", world=2) == (set(), ("autograd", False))
    # Convolution nets time the channels-last memory format (unless set).
    assert candidates("+experiment=svhn_wgan_gp", conv=True)[0] == {("autograd", c) for c in (False, True)}
    assert candidates("+experiment=svhn_wgan_gp", "trainer.channels_last=false", conv=True) == (
        set(),
        ("autograd", False),
    )
    # An explicit setting is never timed; all explicit: nothing to choose. cpu_matmul names no
    # kernel any more (every value runs nn.Linear's BLAS), so it adds no candidates.
    assert candidates("+experiment=mnist_bce", "trainer.backward=autograd", "trainer.cpu_matmul=onednn") == (
        set(),
        ("autograd", False),
    )
    assert candidates("+experiment=mnist_bce", "trainer.backward=manual") == (set(), ("manual", False))
    # The measurement decides: whichever combination is cheap here is the one picked.
    for fast in both:
        assert candidates("+experiment=mnist_bce", fast=fast)[1] == fast
    # Several processes started by torchrun, which config validation cannot see.
    with pytest.raises(ConfigError, match="trainer.backward=manual does not support 2 processes"):
        candidates("+experiment=mnist_bce", "trainer.backward=manual", world=2)


def test_dropout_mask_is_nn_dropouts():
    """The manual step's dropout mask is nn.Dropout's on a CPU: the same draws from the same stream,
    so both steps drop the same units (exact equality: the same kernel on the same numbers)."""
    from ganctl.training.manual_step import dropout_mask

    x = torch.randn(64, 1024)
    for p in (0.3, 0.9):
        torch.manual_seed(0)
        want = torch.nn.Dropout(p).train()(x)
        torch.manual_seed(0)
        assert torch.equal(x * dropout_mask(x, p), want)


def test_resume_is_exact_with_manual_step(mnist_root, tmp_path):
    """3 + 3 steps equal 6 straight: the shared G pass leaves nothing behind across a checkpoint."""
    common = ["model.g_hidden=[48]", "model.d_hidden=[48]", "trainer.backward=manual", "trainer.ckpt_every=3"]
    straight, *_ = trained(mnist_root, tmp_path, "straight", *common, steps=6)
    trained(mnist_root, tmp_path, "first", *common, steps=3)
    cfg = compose(
        "+experiment=mnist_bce", f"dataset.root={mnist_root}", "dataset.split=test", *BASE, *common, "trainer.steps=6"
    )
    run(cfg, tmp_path / "first", resume=checkpoint.load(tmp_path / "first"))
    resumed = checkpoint.load(tmp_path / "first")["G"]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_nan_skip_with_manual_step(mnist_root, tmp_path):
    """A learning rate that blows up: on_nan=skip drops the bad updates and stops after max_nan_skips."""
    from ganctl.errors import Diverged

    cfg = compose(
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        *BASE,
        "trainer.steps=200",
        "trainer.backward=manual",
        "optim.lr=1e30",
        "trainer.on_nan=skip",
        "trainer.max_nan_skips=3",
        "model.g_hidden=[16]",
        "model.d_hidden=[16]",
    )
    with pytest.raises(Diverged, match="3 steps in a row had a non-finite loss"):
        run(cfg, tmp_path / "nan")
