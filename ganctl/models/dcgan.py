"""Convolutional generator and critic in the DCGAN style (setup 003), for 28x28 and 32x32 images."""

from __future__ import annotations

import torch
from torch import nn

from ganctl import models
from ganctl.config import ModelConfig


def base_size(size: int, family: str = "dcgan") -> tuple[int, int]:
    """Smallest feature map >= 4 that doubles up to `size`: 32 -> (4, 3 ups), 28 -> (7, 2 ups)."""
    base, ups = size, 0
    while base % 2 == 0 and base // 2 >= 4:
        base, ups = base // 2, ups + 1
    if ups == 0:
        raise ValueError(f"{family} needs an image side that halves to >= 4 at least once, got {size}")
    return base, ups


class Generator(nn.Module):
    """z -> Linear -> (C0 x b x b) -> [ConvT k4 s2 p1 + ReLU] x ups -> Tanh/Sigmoid image."""

    def __init__(self, cfg: ModelConfig, out_shape: tuple[int, ...]):
        super().__init__()
        channels, size = out_shape[0], out_shape[1]
        self.base, ups = base_size(size)
        widths = [cfg.width * 2**i for i in reversed(range(ups))]  # e.g. 256, 128, 64
        self.c0 = widths[0]
        self.project = nn.Sequential(
            nn.Linear(cfg.z_dim, self.c0 * self.base * self.base),
            *([nn.BatchNorm1d(self.c0 * self.base * self.base)] if cfg.g_norm == "batch" else []),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)]
            if cfg.g_norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU())
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), models.OUTPUTS[cfg.g_out]()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.c0, self.base, self.base)
        return self.net(h)


class Discriminator(nn.Module):
    """[zero-pad 2, Conv k5 s2, LeakyReLU 0.2] x 3 -> Linear -> raw score (a WGAN critic as is)."""

    def __init__(self, cfg: ModelConfig, in_shape: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_shape[0]
        for i in range(3):
            c_out = cfg.width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 5, 2, 2), *models.conv_norm(cfg.d_norm, c_out)]
            layers.append(models.ACTIVATIONS[cfg.d_act]())
            if cfg.d_dropout > 0:
                layers.append(nn.Dropout(cfg.d_dropout))
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n_features = self.features(torch.zeros(1, *in_shape)).shape[1]
        self.head = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def build(cfg: ModelConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ValueError(f"dcgan needs square C x H x W images, got shape {data_shape}")
    return Generator(cfg, data_shape), Discriminator(cfg, data_shape)
