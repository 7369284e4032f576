"""Exponential moving average of the generator's weights (G_ema)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """ema <- beta * ema + (1 - beta) * weights, after every generator update; buffers are copied.

    beta is a fixed `decay`, or comes from a half-life in images as in StyleGAN2-ADA:
    beta = 0.5 ** (batch / half_life), where the half-life is capped at `warmup` x the images seen
    so far (its ema_rampup), so that the first averages forget the random initial weights fast.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float | None = None,
        half_life: float | None = None,
        warmup: float | None = None,
        batch: int = 1,
    ):
        self.decay, self.half_life, self.warmup, self.batch = decay, half_life, warmup, batch
        self.updates = 0  # G updates so far; the half-life's warm-up reads it (restored on resume)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def beta(self) -> float:
        if self.half_life is None:
            return float(self.decay)
        half_life = self.half_life
        if self.warmup is not None:
            half_life = min(half_life, self.updates * self.batch * self.warmup)
        return 0.5 ** (self.batch / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        ema = list(self.model.parameters())
        current = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema, current, 1.0 - self.beta())
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)

    def restart(self, model: nn.Module) -> EMA:
        """A fresh average of `model` with the same settings and update count."""
        fresh = EMA(model, self.decay, self.half_life, self.warmup, self.batch)
        fresh.updates = self.updates
        return fresh

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
