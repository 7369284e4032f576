"""Each loss's value and gradient sign on cases worked out by hand; the step's D scoring and log stats."""

import math

import pytest
import torch
from torch import nn

from ganctl.losses import LOSSES, Loss, Penalty, for_run, gradient_penalty, wasserstein_d, wasserstein_g
from ganctl.training.distributed import Rank
from ganctl.training.step import AutogradStep, DStats, Precision

from conftest import compose

LN2 = math.log(2.0)


def scores(*values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize(
    "name, real, fake, d_expected, g_expected",
    [
        # D(x) = sigmoid(0) = 1/2 everywhere: -log(1/2) per term.
        ("bce", (0.0, 0.0), (0.0, 0.0), 2 * LN2, LN2),
        ("minimax", (0.0, 0.0), (0.0, 0.0), 2 * LN2, -LN2),
        ("wgan_gp", (1.0, 3.0), (0.0, 2.0), 1.0 - 2.0, -1.0),
        # hinge: mean(relu(1 - [0.5, 2])) = 0.25, mean(relu(1 + [-2, 0.5])) = 0.75
        ("hinge", (0.5, 2.0), (-2.0, 0.5), 1.0, 0.75),
        # lsgan: 0.5 * mean([0, 1]) + 0.5 * mean([0, 1]); G: 0.5 * mean([1, 0])
        ("lsgan", (1.0, 0.0), (0.0, 1.0), 0.5, 0.25),
    ],
)
def test_loss_values(name, real, fake, d_expected, g_expected):
    loss = LOSSES[name]
    assert loss.d(scores(*real), scores(*fake)).item() == pytest.approx(d_expected)
    assert loss.g(scores(*fake)).item() == pytest.approx(g_expected)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_signs(name):
    """D lowers its loss by raising real scores and lowering fake ones; G by raising fake scores.

    Scores lie in (0, 1), where every loss is still in its active region (LSGAN's targets are 0 and 1).
    """
    loss = LOSSES[name]
    real, fake = scores(0.3, 0.6), scores(0.4, 0.1)
    loss.d(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    fake_g = scores(0.4, 0.1)
    loss.g(fake_g).backward()
    assert (fake_g.grad < 0).all()


def test_minimax_saturates_where_non_saturating_does_not():
    """Where D confidently rejects fakes, log(1 - D(G(z))) gives G almost no gradient."""
    confident = -10.0
    mm, ns = scores(confident), scores(confident)
    LOSSES["minimax"].g(mm).backward()
    LOSSES["bce"].g(ns).backward()
    assert abs(mm.grad.item()) == pytest.approx(1 / (1 + math.exp(10)), rel=1e-6)
    assert ns.grad.item() == pytest.approx(-1 / (1 + math.exp(-10)), rel=1e-6)


class LinearCritic(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.lin = nn.Linear(len(w), 1, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([w]))

    def forward(self, x):
        return self.lin(x).squeeze(1)


class NoOpt:
    """The optimiser slots of a step whose updates these tests never apply."""

    param_groups: list = []

    def zero_grad(self, set_to_none=True):
        pass

    def step(self):
        raise AssertionError("these tests compute D's loss only")


NO_G = [torch.tensor(0.0)]  # a log row's G losses, where a test looks at D's statistics only


def d_step(D, loss, *loss_overrides, shuffled=False, joint=False):
    """An autograd GAN step around a bare D: only its scoring and loss (d_grads) are exercised.
    `loss` is a Loss record, or a loss name whose run record (penalties included) the overrides shape."""
    if isinstance(loss, str):
        loss = for_run(compose(f"loss={loss}", *loss_overrides).loss)
    G = nn.Identity()
    return AutogradStep(
        G,
        D,
        NoOpt(),
        NoOpt(),
        loss,
        None,
        0,
        Precision("fp32", torch.device("cpu")),
        False,
        Rank(),
        torch.device("cpu"),
        G_run=G,
        D_run=D,
        D_g_phase=D,
        D_penalty=D,
        joint=joint,
        shuffled=shuffled,
    )


def d_loss(step, real, fake):
    """D's loss and log stats for a given fake batch (the step normally draws it from G)."""
    step.G_run, step.latent = (lambda z: fake), (lambda n: torch.zeros(len(fake), 1))
    return step.d_grads(real, last=True)


def test_gradient_penalty_hand_computed():
    """D(x) = w.x has gradient w everywhere: penalty (|w| - 1)^2, d/dw = 2(|w| - 1) w / |w|."""
    torch.manual_seed(0)
    D = LinearCritic([3.0, 4.0])
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    gp, norm = gradient_penalty(D, real, fake)
    assert gp.item() == pytest.approx(16.0, rel=1e-5)
    assert norm.item() == pytest.approx(5.0, rel=1e-5)
    gp.backward()
    assert D.lin.weight.grad.flatten().tolist() == pytest.approx([4.8, 6.4], rel=1e-5)
    # fp16's scaled inner gradient (AMP's recipe) is the same penalty once unscaled.
    gp_scaled, _ = gradient_penalty(D, real, fake, scale=torch.tensor(1024.0))
    assert gp_scaled.item() == pytest.approx(16.0, rel=1e-5)

    step = d_step(D, "wgan_gp")
    total, stats = d_loss(step, real, fake)
    wasserstein = D(fake).mean() - D(real).mean()
    assert total.item() == pytest.approx(wasserstein.item() + 10.0 * 16.0, rel=1e-5)
    assert step.summarise([stats], NO_G).grad_norm.item() == pytest.approx(5.0, rel=1e-5)


def test_shuffled_batch_is_half_the_separate_sum():
    """Setup 004: one mean BCE over real+fake in a permuted batch = half the two means summed."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 1), nn.Flatten(0))
    real, fake = torch.randn(6, 5), torch.randn(6, 5) + 1.0
    separate_step, shuffled_step = d_step(D, "bce"), d_step(D, "bce", shuffled=True)
    separate, sep_raw = d_loss(separate_step, real, fake)
    shuffled, shuf_raw = d_loss(shuffled_step, real, fake)
    sep_stats, shuf_stats = separate_step.summarise([sep_raw], NO_G), shuffled_step.summarise([shuf_raw], NO_G)
    assert shuffled.item() == pytest.approx(0.5 * separate.item(), rel=1e-6)
    # D(x) and D(G(z)) are still reported for the real and the fake half respectively.
    assert [shuf_stats.d_real.item(), shuf_stats.d_fake.item()] == pytest.approx(
        [sep_stats.d_real.item(), sep_stats.d_fake.item()], rel=1e-6
    )


def test_joint_d_pass_matches_two_passes_where_rows_are_independent():
    """The step scores real and fake in one D forward only for a D that treats rows independently."""
    from ganctl.models import build_models, rows_independent

    cfg = compose("+experiment=mnist_bce")
    torch.manual_seed(0)
    _, D = build_models(cfg.model, (1, 28, 28))
    assert rows_independent(D)
    real, fake = torch.rand(16, 1, 28, 28) * 2 - 1, torch.rand(16, 1, 28, 28) * 2 - 1
    two, one = d_step(D, "bce"), d_step(D, "bce", joint=True)
    l_two, s_two = d_loss(two, real, fake)
    g2 = [p.grad.clone() for p in D.parameters()]
    D.zero_grad(set_to_none=True)
    l_one, s_one = d_loss(one, real, fake)
    torch.testing.assert_close(l_one, l_two)
    torch.testing.assert_close(one.summarise([s_one], NO_G), two.summarise([s_two], NO_G))
    for p, b in zip(D.parameters(), g2):
        torch.testing.assert_close(p.grad, b)
    # Batch norm (DCGAN with d_norm=batch) and setup 002's batch moments mix the rows.
    assert not rows_independent(build_models(compose("+experiment=gaussian1d").model, (1,))[1])
    dcgan = compose("+experiment=svhn_wgan_gp", "model.d_norm=batch").model
    assert not rows_independent(build_models(dcgan, (3, 32, 32))[1])


def test_log_row_is_the_mean_over_the_steps_it_covers():
    """The loop keeps each step's raw scores and reduces them once per log row."""
    step = d_step(nn.Identity(), "bce")
    raws = [
        DStats(torch.tensor(float(i)), torch.full((4,), float(i)), torch.full((4,), -float(i)), torch.tensor(0.0))
        for i in range(3)
    ]
    row = step.summarise(raws, [torch.tensor(float(i)) for i in (3, 4, 8)])
    assert row.d_loss.item() == pytest.approx(1.0)  # mean loss of 0, 1, 2
    expected_real = torch.sigmoid(torch.tensor([0.0, 1.0, 2.0])).mean().item()
    assert row.d_real.item() == pytest.approx(expected_real)  # D(x): mean of the per-step means
    assert row.d_fake.item() == pytest.approx(1 - expected_real)
    assert row.g_loss.item() == pytest.approx(5.0)  # mean G loss of 3, 4, 8


def test_r1_is_a_penalty_of_the_loss_record_after_the_loss_own():
    """R1 joins any loss as a Penalty: weight gamma / 2 (Mescheder et al.), on its lazy schedule."""
    assert for_run(compose("loss=bce").loss).penalties == ()
    (gp,) = for_run(compose("loss=wgan_gp", "loss.gp_weight=3").loss).penalties
    assert (gp.fn, gp.weight, gp.every, gp.augmented) == (gradient_penalty, 3.0, 1, False)
    gp, r1 = for_run(compose("loss=wgan_gp", "loss.r1_gamma=0.5", "loss.r1_every=4").loss).penalties
    assert gp.fn is gradient_penalty and (r1.weight, r1.every, r1.augmented) == (0.25, 4, True)


def test_lazy_penalty_is_scaled_on_its_updates_and_its_last_norm_logged_between():
    """D(x) = w.x with |w| = 5: R1 = 25 and norm 5 on every 3rd D update, weighted 3 * gamma / 2 there."""
    torch.manual_seed(0)
    D = LinearCritic([3.0, 4.0])
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    step = d_step(D, "hinge", "loss.r1_gamma=0.2", "loss.r1_every=3")
    hinge = LOSSES["hinge"].d(D(real), D(fake)).item()
    seen = []
    for _ in range(4):
        total, stats = d_loss(step, real, fake)
        seen.append((total.item() - hinge, stats.grad_norm.item()))
    # float32 totals near 10 carry ~1e-6 of rounding; a missed or unscaled R1 is off by 2.5 or more
    assert [s[0] for s in seen] == pytest.approx([0.3 * 25, 0, 0, 0.3 * 25], abs=1e-4)
    assert [s[1] for s in seen] == pytest.approx([5.0] * 4, rel=1e-5)  # float32 sqrt of a mean of 8
    assert step.d_updates == 4


def test_a_new_penalty_needs_no_change_to_the_step():
    """The step adds whatever penalties the Loss record carries, by weight, and logs the last one's norm."""
    D = LinearCritic([1.0, 0.0])
    real, fake = torch.ones(4, 2), torch.zeros(4, 2)
    const = Penalty(lambda D, real, fake, scale: (D(real).mean(), torch.tensor(7.0)), weight=2.0)
    step = d_step(D, Loss("custom", wasserstein_d, wasserstein_g, penalties=(const,)))
    total, stats = d_loss(step, real, fake)
    assert total.item() == pytest.approx((0.0 - 1.0) + 2.0 * 1.0)
    assert stats.grad_norm.item() == 7.0
