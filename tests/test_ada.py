"""Adaptive augmentation (trainer.augment_p, the xflip and rotate90 transforms) and
trainer.batch_gpu's gradient accumulation. The exact resume of p: tests/test_resume.py."""

import pytest
import torch

from ganctl import augment
from ganctl.commands.train import run
from ganctl.models import build_models
from ganctl.training import checkpoint

from conftest import compose


def test_xflip_and_rotate90_permute_pixels_into_flips_and_quarter_turns():
    x = torch.randn(64, 2, 5, 5)
    torch.manual_seed(0)
    flipped, turned = augment.xflip(x), augment.rotate90(x)
    flips = {0: x, 1: x.flip(3)}
    turns = {k: torch.rot90(x, k, (2, 3)) for k in range(4)}
    which_flip = [next(k for k, v in flips.items() if torch.equal(flipped[i], v[i])) for i in range(64)]
    which_turn = [next(k for k, v in turns.items() if torch.equal(turned[i], v[i])) for i in range(64)]
    # Every sample is one of the views, and 64 draws reach all of them (each missed with p <= (3/4)^64).
    assert set(which_flip) == {0, 1} and set(which_turn) == {0, 1, 2, 3}


def test_fixed_p_applies_each_transform_to_that_share_of_samples():
    x = torch.randn(4000, 1, 4, 4)
    torch.manual_seed(0)
    assert augment.policy(["xflip"], 0.0)(x).equal(x)
    changed = (augment.policy(["rotate90"], 0.3)(x) != x).flatten(1).any(1).float().mean()
    # Chosen with p = 0.3, then a quarter turn other than none: 0.3 * 3/4 = 0.225 of the samples;
    # 4000 draws put the share within 0.02 of it (3 standard deviations are 0.02).
    assert abs(float(changed) - 0.225) < 0.02
    # p = 1 draws no mask: the same numbers as the transforms alone (runs from before augment_p).
    torch.manual_seed(1)
    always = augment.policy(["translation", "cutout"], 1.0)(x)
    torch.manual_seed(1)
    assert always.equal(augment.cutout(augment.translation(x)))


def test_auto_p_steps_towards_the_target_and_stays_in_bounds():
    ada = augment.policy(["translation"], "auto", torch.device("cpu"), batch=64)
    step = 64 * augment.ADA_INTERVAL / augment.ADA_SPEED_IMGS
    ada.observe(torch.tensor([1.0, 2.0, -1.0]))  # r_t = 1/3 < 0.6: D is not overfitting
    ada.adjust()
    assert float(ada.p) == 0.0  # clipped at 0
    for _ in range(3):
        ada.observe(torch.tensor([0.5, 3.0, 2.0, 1.0, -0.1]))  # counted over both batches:
        ada.observe(torch.ones(5))  # r_t = (4 - 1 + 5) / 10 = 0.8 > 0.6, D is overfitting
        ada.adjust()
    assert float(ada.p) == pytest.approx(3 * step)
    assert ada.signs.sum() == 0  # each adjustment starts a new interval
    ada.p.fill_(0.799)
    leaky = augment.policy(["xflip", "translation"], "auto", torch.device("cpu"), batch=64)
    leaky.p.fill_(0.799)
    for a in (ada, leaky):
        a.observe(torch.ones(8))
        a.adjust()
    # Flips and quarter turns leak above p ~ 0.8 (Karras et al. 2020): auto stops there for them.
    assert float(leaky.p) == pytest.approx(augment.ADA_MAX_P_LEAKY) and float(ada.p) == pytest.approx(0.799 + step)


def test_fixed_p_trains_and_is_config_not_state(mnist_root, tmp_path):
    cfg = compose(
        "+experiment=mnist_best",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "model.width=8",
        "trainer.steps=2",
        "trainer.log_every=1",
        "trainer.progress=false",
        "trainer.augment=[xflip,rotate90,color]",
        "trainer.augment_p=0.3",
        "trainer.loggers=[csv]",
    )
    run(cfg, tmp_path / "r")
    header, *rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and "augment_p" not in header  # only auto's moving p gets a column and a panel
    assert checkpoint.load(tmp_path / "r")["augment"] is None  # a fixed p is config, not state


# No batch statistics (g_norm=none, no spectral norm's power iteration), no random transforms, R1
# at every D update: the D phase, the penalty and the G phase all run chunked.
EXACT = [
    "+experiment=mnist_best",
    "model.width=8",
    "model.g_norm=none",
    "model.d_spectral_norm=false",
    "trainer.augment=[]",
    "loss.r1_every=1",
    "trainer.batch_size=16",
    "trainer.steps=3",
    "trainer.log_every=3",
    "trainer.progress=false",
    "trainer.channels_last=false",
    "trainer.backward=autograd",
    # SGD moves each weight by lr x its gradient, so the weights compare the gradients. Adam's first
    # updates are lr x sign(gradient): a bias whose gradient is ~1e-9 (noise) moved by +-2e-4
    # between the two runs on the generated MNIST twin.
    "optim=sgd",
]


def _params(folder, cfg) -> dict:
    ckpt = checkpoint.load(folder)
    G, D = build_models(cfg.model, tuple(ckpt["data_shape"]), 0)
    G.load_state_dict(ckpt["G"])
    D.load_state_dict(ckpt["D"])
    return {f"{net}.{k}": v.detach() for net, m in (("G", G), ("D", D)) for k, v in m.named_parameters()}


def test_batch_gpu_chunks_give_the_full_batch_result(mnist_root, tmp_path):
    base = [*EXACT, f"dataset.root={mnist_root}", "dataset.split=test"]
    cfg = compose(*base)
    run(cfg, tmp_path / "full")
    run(compose(*base, "trainer.batch_gpu=4"), tmp_path / "chunks")
    full, chunks = _params(tmp_path / "full", cfg), _params(tmp_path / "chunks", cfg)
    for name, value in full.items():
        # Four chunks sum each gradient in another order than one batch of 16: float32 rounding
        # (relative 1e-7 per sum) times 3 SGD updates of lr 1e-3 on weights of size <= 0.25,
        # measured at most 3.7e-9 on real MNIST; 1e-7 is 25 times that, while a chunk's loss
        # weighted wrongly (x4) moves the weights by ~lr x gradient, ~1e-4.
        assert torch.allclose(value, chunks[name], rtol=0, atol=1e-7), name
    assert not all(torch.equal(v, chunks[k]) for k, v in full.items())  # the chunks did run: not bitwise


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["trainer.batch_gpu=5"], "trainer.batch_gpu=5 is invalid; accepted: a divisor of the per-device batch 64"),
        (["trainer.batch_gpu=0"], "trainer.batch_gpu=0"),
        (["trainer.augment_p=1.5"], "trainer.augment_p=1.5 is invalid; accepted: a probability in [0, 1], or auto"),
        (["trainer.augment_p=often"], "trainer.augment_p='often'"),
        (["trainer.augment_target=1.0"], "trainer.augment_target=1.0 is invalid; accepted: a number in (0, 1)"),
        (["trainer.augment=[]", "trainer.augment_p=auto"], "a number unless trainer.augment lists transforms"),
        (["loss=wgan_gp", "trainer.augment_p=auto"], "a fixed number with loss=wgan_gp (auto: bce, minimax, hinge)"),
        (["trainer.augment=[mirror]"], "trainer.augment='mirror' is invalid; accepted: a list of xflip, rotate90"),
    ],
)
def test_bad_augment_and_batch_gpu_values_are_one_line(overrides, needle, capsys, tmp_path):
    from test_bad_input import expect_error

    expect_error(capsys, ["train", "+experiment=mnist_best", *overrides, f"hydra.run.dir={tmp_path / 'r'}"], needle)
    assert not (tmp_path / "r").exists()


def test_manual_step_refuses_batch_gpu(capsys):
    from test_bad_input import expect_error

    expect_error(
        capsys,
        ["train", "+experiment=mnist_bce", "trainer.backward=manual", "trainer.batch_gpu=32"],
        "trainer.backward=manual does not support trainer.batch_gpu=32 (chunks accumulate through autograd",
    )
