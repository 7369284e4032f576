"""Model families: output shapes for every dataset shape, and the setup-specific pieces."""

import math

import pytest
import torch

from ganctl.config import ModelConfig
from ganctl.generation import latents
from ganctl.models import build_models
from ganctl.models.mlp import BatchMoments


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_image_shapes(arch, shape):
    cfg = ModelConfig(arch=arch, width=8, g_hidden=[16], d_hidden=[16], z_dim=12)
    G, D = build_models(cfg, shape)
    z = latents(5, cfg, device="cpu")
    x = G(z)
    assert x.shape == (5, *shape)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert D(x).shape == (5,)


def test_dcgan_matches_setup_003_sizes():
    """G: Linear to 256x4x4 then ConvT 128, 64, 3; critic 3->64->128->256 at 4x4, Linear 4096->1."""
    G, D = build_models(ModelConfig(arch="dcgan", z_dim=128, width=64), (3, 32, 32))
    assert G.project[0].out_features == 4096
    convs = [m for m in G.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(256, 128), (128, 64), (64, 3)]
    assert D.head.in_features == 4096
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Sigmoid)) for m in D.modules())


def test_batch_moments_match_numpy_definitions():
    x = torch.distributions.Gamma(2.0, 1.0).sample((5000, 1))
    m = BatchMoments()(x)[0].double()
    v = x.double().flatten()
    mean, std = v.mean(), v.std(unbiased=False)
    z = (v - mean) / std
    assert m.tolist() == pytest.approx(
        [mean.item(), std.item(), (z**3).mean().item(), (z**4).mean().item() - 3], rel=1e-4
    )


def test_gaussian_model_judges_whole_batch():
    G, D = build_models(
        ModelConfig(
            z_dim=1,
            latent="uniform",
            g_hidden=[5, 5],
            g_act="tanh",
            g_out="none",
            d_hidden=[10, 10],
            d_act="sigmoid",
            d_features="moments",
        ),
        (1,),
    )
    z = latents(500, ModelConfig(z_dim=1, latent="uniform"), device="cpu")
    assert 0 <= z.min() and z.max() < 1
    assert D(G(z)).shape == (1,)


def test_he_normal_init_scale():
    """Setup 000's init: N(0, 2/fan_in) weights and zero biases."""
    G, _ = build_models(ModelConfig(init="he_normal", z_dim=100, g_hidden=[128]), (1, 28, 28))
    first = G.net[0]
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / 100), rel=0.05)
    assert first.bias.abs().max().item() == 0.0
