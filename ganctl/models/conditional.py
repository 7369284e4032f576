"""Class-conditional wrappers around any family's G and D (model.conditional=true).

G(z, y): where the family's G has batch norm, every batch norm becomes class-conditional (de Vries
et al. 2017, as in BigGAN): the batch statistics are normalised away and the class sets the gain
and bias. Feeding the label beside z into a batch-normalised layer instead lets G scale the class
term up until z's share of each normalised feature vanishes; measured here on MNIST, that G drew
one image per class whatever z was. A G without batch norm gets a learned label embedding, as wide
as z, beside z.

D(x, y) is Miyato & Koyama 2018's projection discriminator: the family's score of x plus the inner
product of a class embedding with D's last features.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from ganctl.config import ModelConfig


class ClassBatchNorm(nn.Module):
    """Batch norm without its own affine, then a per-class gain (initially 1) and bias (0)."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm, n_classes: int):
        super().__init__()
        c = norm.num_features
        self.norm = type(norm)(c, eps=norm.eps, momentum=norm.momentum, affine=False)
        self.gain = nn.Embedding(n_classes, c)
        self.bias = nn.Embedding(n_classes, c)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)
        self.labels: torch.Tensor | None = None  # set by ConditionalGenerator before each pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return self.norm(x) * self.gain(self.labels).view(shape) + self.bias(self.labels).view(shape)


class ConditionalGenerator(nn.Module):
    def __init__(self, build_g: Callable[[ModelConfig], nn.Module], cfg: ModelConfig, n_classes: int):
        super().__init__()
        self.embed: nn.Embedding | None = None
        if cfg.g_norm == "batch":
            base = build_g(cfg)
            for name, norm in list(base.named_modules()):
                if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                    parent_name, _, child = name.rpartition(".")
                    setattr(base.get_submodule(parent_name), child, ClassBatchNorm(norm, n_classes))
        else:
            self.embed = nn.Embedding(n_classes, cfg.z_dim)
            base = build_g(replace(cfg, z_dim=2 * cfg.z_dim))
        self.base = base

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.base(torch.cat([z, self.embed(y)], dim=1))
        for m in self.base.modules():
            if isinstance(m, ClassBatchNorm):
                m.labels = y
        return self.base(z)


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
