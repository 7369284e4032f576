"""Fully connected generator and discriminator (setups 000, 001, 002 and 004)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganctl import models
from ganctl.config import ModelConfig


def _norm1d(kind: str, width: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm1d(width)]
    if kind == "layer":
        return [nn.LayerNorm(width)]
    return []


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig, out_shape: tuple[int, ...]):
        super().__init__()
        self.out_shape = out_shape
        layers: list[nn.Module] = []
        width = cfg.z_dim
        for hidden in cfg.g_hidden:
            layers += [nn.Linear(width, hidden), *_norm1d(cfg.g_norm, hidden), models.ACTIVATIONS[cfg.g_act]()]
            width = hidden
        layers += [nn.Linear(width, math.prod(out_shape)), models.OUTPUTS[cfg.g_out]()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


class BatchMoments(nn.Module):
    """Setup 002's D input: the whole batch becomes one row (mean, std, skewness, excess kurtosis)."""

    mixes_rows = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Few, fused ops: this runs 40 times per step of setup 002, whose cost is op overhead.
        var, mean = torch.var_mean(x.flatten(), correction=0)
        std = var.sqrt()
        z = (x.flatten() - mean) / std
        z2 = z * z
        moments = torch.stack([mean, std, torch.dot(z2, z) / z.numel(), torch.dot(z2, z2) / z.numel() - 3.0])
        return moments.unsqueeze(0)


class Discriminator(nn.Module):
    """Returns raw scores: the losses apply the sigmoid themselves (log-sigmoid is exact and stable)."""

    def __init__(self, cfg: ModelConfig, in_shape: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module]
        if cfg.d_features == "moments":
            layers, width = [BatchMoments()], 4
        else:
            layers, width = [nn.Flatten()], math.prod(in_shape)
        for hidden in cfg.d_hidden:
            layers += [nn.Linear(width, hidden), *_norm1d(cfg.d_norm, hidden), models.ACTIVATIONS[cfg.d_act]()]
            if cfg.d_dropout > 0:
                layers.append(nn.Dropout(cfg.d_dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's output, which the projection discriminator reads."""
        for layer in self.net[:-1]:
            x = layer(x)
        return x

    @property
    def head(self) -> nn.Linear:
        return self.net[-1]


def build(cfg: ModelConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg, data_shape), Discriminator(cfg, data_shape)
