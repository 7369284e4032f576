"""Projecting images into a trained generator: the latent (and class) whose G image matches each one.

Adam on z from the best of a pool of random latents, several restarts at once, on a distance of
pixels plus features (see LOSS below for the measured choice). Gaussian latents are put back on
the sphere of radius sqrt(z_dim) after every step, where nearly all of G's training latents lay;
uniform ones are clamped into [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ganctl.config import ModelConfig

Features = Callable[[torch.Tensor], torch.Tensor]  # images in the data's range -> N x F, differentiable

RESTARTS, STEPS = 4, 200
LR = 0.2  # Adam's step on z, ramped down to 0; 0.05 and 0.1 ended lower on real digits (docs/EVAL.md)
FEATURE_WEIGHT = 0.3  # of the squared relative feature distance, beside the mean squared pixel error
POOL = 16  # random latents tried per restart; each restart starts from the best of its pool
CHUNK = 512  # candidates through G at once while scoring the pools


@dataclass
class Projected:
    z: torch.Tensor  # N x z_dim
    labels: torch.Tensor | None  # N class labels of a conditional G
    x: torch.Tensor  # N x C x H x W, G's image of (z, label), in the data's range
    psnr: torch.Tensor  # N, dB, with the data's range as the peak
    feature_distance: torch.Tensor  # N, |f(x) - f(target)| / |f(target)|


def psnr(x: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB, with the data's range as the peak."""
    lo, hi = value_range
    mse = ((x - target) / (hi - lo)).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


def feature_distance(fx: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Relative L2 distance of feature vectors: 0 for the same features, about 1 for unrelated images."""
    return (fx - ft).norm(dim=1) / ft.norm(dim=1).clamp_min(1e-8)


def discriminator_features(D: nn.Module) -> Features:
    """D's last hidden layer (a conditional D's base), before the score."""
    base = getattr(D, "base", D)
    return lambda x: base.features(x).flatten(1)


def _onto_latents(z: torch.Tensor, latent: str) -> torch.Tensor:
    """In place: z back where G was trained (the sphere of radius sqrt(d), or the unit cube)."""
    if latent == "uniform":
        return z.clamp_(0.0, 1.0)
    return z.mul_(math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True).clamp_min(1e-8))


class _Search:
    """The candidates (image, class, restart) and their distance to their targets."""

    def __init__(self, G, targets, features, image_of, labels):
        self.G, self.targets, self.features = G, targets, features
        self.image_of, self.labels = image_of, labels
        with torch.no_grad():
            self.target_features = features(targets)

    def images(self, z: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
        return self.G(z) if self.labels is None else self.G(z, self.labels[rows])

    def loss(self, z: torch.Tensor, rows: slice | torch.Tensor = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """Each candidate's distance (pixels' mean square + weighted squared relative feature distance) and image."""
        x = self.images(z, rows)
        image = self.image_of[rows]
        pixels = (x - self.targets[image]).pow(2).flatten(1).mean(1)
        ft = self.target_features[image]
        feats = (self.features(x) - ft).pow(2).sum(1) / ft.pow(2).sum(1).clamp_min(1e-8)
        return pixels + FEATURE_WEIGHT * feats, x


def _starts(search: _Search, m: int, model: ModelConfig, generator: torch.Generator, device) -> torch.Tensor:
    """m starting latents: for each candidate, the nearest of POOL random ones."""
    draw = torch.rand if model.latent == "uniform" else torch.randn
    pool = _onto_latents(draw(POOL, m, model.z_dim, generator=generator), model.latent).to(device)
    with torch.no_grad():
        scores = torch.stack([_chunked(search, pool[k]) for k in range(POOL)])  # POOL x m
    return pool[scores.argmin(0), torch.arange(m, device=device)]


def _chunked(search: _Search, z: torch.Tensor) -> torch.Tensor:
    return torch.cat([search.loss(z[a : a + CHUNK], slice(a, a + CHUNK))[0] for a in range(0, len(z), CHUNK)])


def project(
    G: nn.Module,
    targets: torch.Tensor,
    model: ModelConfig,
    value_range: tuple[float, float],
    features: Features,
    labels: torch.Tensor | None = None,
    n_classes: int | None = None,
    restarts: int = RESTARTS,
    steps: int = STEPS,
    seed: int = 0,
    one_class: bool = False,
) -> Projected:
    """The latents (N x z_dim) of G (in eval mode) whose images best match `targets` (N x C x H x W).

    A conditional G takes `labels` (N), or `n_classes` to try every class: the best per image,
    or with `one_class` the class best for all images together (a walk between them holds one).
    """
    device = next(G.parameters()).device
    targets = targets.to(device)
    n, tried = len(targets), n_classes or 1
    per_image = tried * restarts
    image_of = torch.arange(n, device=device).repeat_interleave(per_image)
    if n_classes is not None:
        labels = torch.arange(n_classes, device=device).repeat_interleave(restarts).repeat(n)
    elif labels is not None:
        labels = labels.to(device).repeat_interleave(restarts)
    frozen = [(p, p.requires_grad) for p in G.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)  # gradients for z only
    try:
        search = _Search(G, targets, features, image_of, labels)
        z = _starts(search, len(image_of), model, torch.Generator().manual_seed(seed), device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=LR)
        for step in range(steps):
            # A cosine ramp-down of the step: large moves first, then settle into the nearest minimum.
            opt.param_groups[0]["lr"] = LR * 0.5 * (1 + math.cos(math.pi * step / steps))
            opt.zero_grad(set_to_none=True)
            search.loss(z)[0].sum().backward()  # the sum: each candidate's gradient is its own loss's
            opt.step()
            with torch.no_grad():
                _onto_latents(z, model.latent)
        with torch.no_grad():
            final, x = search.loss(z)
            pick = _pick(final.view(n, tried, restarts), one_class)
            x, fx = x[pick], features(x[pick])
            return Projected(
                z[pick].detach().cpu(),
                None if labels is None else labels[pick].cpu(),
                x.cpu(),
                psnr(x, targets, value_range).cpu(),
                feature_distance(fx, search.target_features).cpu(),
            )
    finally:
        for p, grad in frozen:
            p.requires_grad_(grad)


def _pick(loss: torch.Tensor, one_class: bool) -> torch.Tensor:
    """The flat index of each image's best candidate in an N x classes x restarts table."""
    n, tried, restarts = loss.shape
    best, which = loss.min(2)  # each (image, class): its best restart
    cls = best.sum(0).argmin().expand(n) if one_class else best.argmin(1)
    image = torch.arange(n, device=loss.device)
    return (image * tried + cls) * restarts + which[image, cls]
