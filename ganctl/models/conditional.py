"""Class-conditional wrappers around any family's G and D (model.conditional=true).

G(z, y) is the family's generator fed [z, embed(y)]: the label's learned embedding, as wide as z,
joins the latent. D(x, y) is Miyato & Koyama 2018's projection discriminator: the family's score
of x plus the inner product of the class embedding with D's last features, which conditions D
more strongly than concatenating the label to its input.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from ganctl.config import ModelConfig


class ConditionalGenerator(nn.Module):
    def __init__(self, build_g: Callable[[ModelConfig], nn.Module], cfg: ModelConfig, n_classes: int):
        super().__init__()
        self.embed = nn.Embedding(n_classes, cfg.z_dim)
        self.base = build_g(replace(cfg, z_dim=2 * cfg.z_dim))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.base(torch.cat([z, self.embed(y)], dim=1))


class ProjectionDiscriminator(nn.Module):
    """`base` scores through `base.features(x)` (N x F) and `base.head` (Linear F -> 1)."""

    def __init__(self, base: nn.Module, n_classes: int):
        super().__init__()
        self.base = base
        self.embed = nn.Embedding(n_classes, base.head.in_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # start near the unconditional score

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.base.features(x)
        return self.base.head(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
