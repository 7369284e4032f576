"""The GAN step's implementations compute the same gradients: manual vs autograd, bf16 vs fp32.

Each comparison is of one D phase's and one G phase's gradients from the same weights, batch and
random stream, so its tolerance follows from the arithmetic alone, on any CPU:
- two fp32 computations of the same sums in another order differ by at most about K * eps *
  max|term| (eps = 6e-8, K <= ~1,300 terms along setup 001's widest chain), i.e. ~1e-4 of the
  tensor's largest entry; a wrong gradient (a missing factor, a sign, a dropped row) is off by
  the order of that largest entry;
- bf16 keeps 8 significant bits (eps = 3.9e-3) of every product's inputs; its products
  accumulate in fp32. The error compounds along the chain, about 1.5% per layer, and G's first
  layer sits six products deep (through D and back through G): measured 7% of the gradient's
  norm there, 1-2% elsewhere. A flipped sign is off by 200% of the norm, a factor of two by 50%+.
"""

import pytest

from ganctl.training.build import build
from ganctl.training.distributed import Rank

from conftest import compose

FP32_REORDER = 2e-4  # of the largest entry: K * eps with K ~ 1,300 (see above), with a margin
BF16_ROUNDING = 0.25  # of the gradient's norm: ~1.5% per layer over a chain of six, with a margin


def phase_grads(mnist_root, *overrides, experiment="mnist_bce"):
    """D's gradients after one D phase and G's after one G phase, from seed 0's initial state."""
    cfg = compose(
        f"+experiment={experiment}",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.device=cpu",
        "trainer.steps=1",
        *overrides,
    )
    r = build(cfg, Rank())
    real = r.data.batch(r.state.sampler.next())
    d_loss, _ = r.gan.d_grads(real, last=True)
    d = {n: p.grad.clone() for n, p in r.state.D.named_parameters()}
    g_loss = r.gan.g_grads()
    g = {n: p.grad.clone() for n, p in r.state.G.named_parameters()}
    return r.gan.name, d, g, float(d_loss.detach()), float(g_loss.detach())


def assert_grads_close(a: dict, b: dict, rel: float) -> float:
    """Every tensor within rel x its largest entry; returns the largest difference seen (relative)."""
    assert a.keys() == b.keys()
    worst = 0.0
    for k in a:
        scale = b[k].abs().max().item()
        diff = (a[k].float() - b[k].float()).abs().max().item()
        assert diff <= rel * scale + 1e-12, (k, diff, scale)
        worst = max(worst, diff / (scale or 1.0))
    return worst


SETUPS = {
    "setup_001": [],
    "small_blas_sizes": [
        "model.g_hidden=[32]",
        "model.d_hidden=[24,16]",
        "model.g_out=sigmoid",
        "dataset.range=[0,1]",
        "model.d_act=relu",
        "model.z_dim=20",
        "trainer.batch_size=10",
    ],
    "minimax": ["model.g_hidden=[48]", "model.d_hidden=[48]", "loss=minimax"],
    "hinge": ["model.g_hidden=[48]", "model.d_hidden=[48]", "loss=hinge"],
    "lsgan": ["model.g_hidden=[48]", "model.d_hidden=[48]", "loss=lsgan"],
    "dropout_shuffled": [
        "model.g_hidden=[64,96]",
        "model.d_hidden=[96,48]",
        "model.d_dropout=0.3",
        "loss.d_batch=shuffled",
        "model.d_act=relu",
        "trainer.batch_size=32",
    ],
    "blas": ["trainer.cpu_matmul=blas"],
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_manual_step_gradients_equal_autograd(setup, mnist_root):
    name_m, d_m, g_m, dl_m, gl_m = phase_grads(mnist_root, "trainer.backward=manual", *SETUPS[setup])
    name_a, d_a, g_a, dl_a, gl_a = phase_grads(mnist_root, "trainer.backward=autograd", *SETUPS[setup])
    assert (name_m, name_a) == ("manual", "autograd")
    assert_grads_close(d_m, d_a, FP32_REORDER)
    assert_grads_close(g_m, g_a, FP32_REORDER)
    assert dl_m == pytest.approx(dl_a, rel=1e-5) and gl_m == pytest.approx(gl_a, rel=1e-5)


@pytest.mark.parametrize(
    "setup", [[], ["loss=lsgan"], ["model.d_act=tanh", "optim=adam"]], ids=["setup_002", "lsgan", "tanh_d"]
)
def test_manual_step_with_batch_moments_equals_autograd(setup):
    """Setup 002: D scores the batch's four moments; their gradient is written out by hand
    (manual_step.moments_backward). Sums of 500 values, so the reordering bound above holds."""
    runs = {
        b: phase_grads("unused", f"trainer.backward={b}", *setup, experiment="gaussian1d")
        for b in ("manual", "autograd")
    }
    (name_m, d_m, g_m, dl_m, gl_m), (name_a, d_a, g_a, dl_a, gl_a) = runs["manual"], runs["autograd"]
    assert (name_m, name_a) == ("manual", "autograd")
    assert_grads_close(d_m, d_a, FP32_REORDER)
    assert_grads_close(g_m, g_a, FP32_REORDER)
    assert dl_m == pytest.approx(dl_a, rel=1e-5) and gl_m == pytest.approx(gl_a, rel=1e-5)


def test_bf16_gradients_close_to_fp32(mnist_root):
    _, d_32, g_32, *_ = phase_grads(mnist_root, "trainer.backward=autograd")
    _, d_16, g_16, *_ = phase_grads(mnist_root, "trainer.precision=bf16")
    errors = [((a[k] - b[k]).norm() / b[k].norm()).item() for a, b in ((d_16, d_32), (g_16, g_32)) for k in a]
    assert max(errors) < BF16_ROUNDING, errors
    assert min(errors) > FP32_REORDER  # bf16 really ran: rounding at its precision, not fp32's
