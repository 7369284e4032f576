"""Latents and G(z): the one latent sampler and the one `generate` of training, sample, interpolate and eval."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from ganctl.config import ModelConfig


def latents(
    n: int,
    model: ModelConfig,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    truncation: float | None = None,
) -> torch.Tensor:
    """n latents z ~ N(0, I), or U[0, 1) per entry as in setup 002.

    Training draws from the device's global random stream (`generator=None`), which checkpoints
    save and restore. Samples a user asks for by seed come from a CPU `generator`, so every
    device draws the same latents.
    """
    draw = torch.rand if model.latent == "uniform" else torch.randn
    z = draw(n, model.z_dim, device=device, generator=generator)
    if truncation is not None:
        # The truncation trick: redraw Gaussian entries beyond +-T until none is left.
        mask = z.abs() > truncation
        while mask.any():
            z[mask] = torch.randn(int(mask.sum()), device=z.device, generator=generator)
            mask = z.abs() > truncation
    return z


def seeded(n: int, model: ModelConfig, seed: int, truncation: float | None = None) -> torch.Tensor:
    """The latents of `ganctl sample --seed`: the same seed gives the same latents on any device."""
    return latents(n, model, generator=torch.Generator().manual_seed(seed), truncation=truncation)


def class_labels(n: int, n_classes: int, label: int | None = None) -> torch.Tensor:
    """Labels for n samples of a conditional G: all `label`, or every class in turn in equal
    blocks (ceil(n / n_classes) each), so a grid of that many columns has one row per class."""
    if label is not None:
        return torch.full((n,), label, dtype=torch.long)
    return torch.arange(n) // math.ceil(n / n_classes)


def class_columns(n: int, n_classes: int) -> int:
    """Grid columns for `class_labels(n, n_classes)`: each class fills whole rows, one row when
    its block is no wider than ~1.5 sqrt(n) (10 classes x 10), else the widest divisor of the
    block that is (2 classes x 32 -> 8 columns, 4 rows each)."""
    block = math.ceil(n / n_classes)
    widest = max(1, int(1.5 * math.ceil(math.sqrt(n))))
    return max(d for d in range(1, min(block, widest) + 1) if block % d == 0)


@torch.no_grad()
def generate(
    G: nn.Module,
    z: torch.Tensor,
    batch_size: int | None = None,
    progress: bool = False,
    convert: Callable[[torch.Tensor], torch.Tensor] | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """G(z), or G(z, labels) for a conditional G, in eval mode on G's device, in batches, returned
    as float32 (or `convert`ed) on the CPU.

    `convert` maps each batch before it is kept (e.g. to uint8 pixels): 50,000 SVHN samples are
    600 MB as float32 but 150 MB as uint8, so large draws never hold the float copy.
    """
    device = next(G.parameters()).device
    step = batch_size or max(1, z.shape[0])
    starts = range(0, z.shape[0], step)
    was_training = G.training
    G.eval()
    try:
        chunks = []
        for start in tqdm(starts, desc="sample", unit="batch", disable=not progress or len(starts) < 2):
            zs = z[start : start + step].to(device)
            x = (G(zs) if labels is None else G(zs, labels[start : start + step].to(device))).float()
            chunks.append((convert(x) if convert is not None else x).cpu())
        return torch.cat(chunks)
    finally:
        G.train(was_training)
