"""Differentiable augmentation of D's inputs (Zhao et al. 2020, "DiffAugment").

D sees real and fake batches through the same random transforms in both phases, and gradients
flow through them to G, so D cannot memorise a small training set while G is still taught to draw
un-augmented images. Each transform draws its randomness per sample from the global torch RNG of
the batch's device, so a seed (and a resumed checkpoint's RNG state) replays it exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _uniform(x: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    return torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(low, high)


def color(x: Tensor) -> Tensor:
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5], DiffAugment's ranges for [-1, 1] pixels."""
    x = x + (_uniform(x) - 0.5)
    if x.shape[1] > 1:  # saturation is undefined for one channel
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its side in x and y, filling with zeros (DiffAugment's 1/8)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy  # the padded row each output pixel reads
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    padded = F.pad(x, (1, 1, 1, 1))  # one ring of zeros; every out-of-image read is clamped onto it
    rows = rows.clamp(-1, h).add(1)
    cols = cols.clamp(-1, w).add(1)
    flat = (rows * (w + 2) + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` of the side at a random centre per image (DiffAugment's 1/2)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Centres anywhere on the image, so a square near the border is cut partly outside it.
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENTS: dict[str, Callable[[Tensor], Tensor]] = {"color": color, "translation": translation, "cutout": cutout}


def policy(names: list[str]) -> Callable[[Tensor], Tensor] | None:
    """The transforms in DiffAugment's order (colour, translation, cutout), or None for none."""
    chosen = [AUGMENTS[n] for n in AUGMENTS if n in names]
    if not chosen:
        return None

    def augment(x: Tensor) -> Tensor:
        for fn in chosen:
            x = fn(x)
        return x

    return augment
