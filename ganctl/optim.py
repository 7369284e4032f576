"""Optimisers for G and D from one shared config with per-network overrides."""

from __future__ import annotations

from typing import Iterable

import torch

from ganctl.config import OptimConfig

OPTIMIZERS = ("adam", "sgd", "rmsprop")
IMPLS = ("auto", "foreach", "fused", "single")


def resolved(cfg: OptimConfig, which: str) -> dict:
    """The effective settings for `which` in ("g", "d"): shared values, then the overrides."""
    over = getattr(cfg, which)
    pick = lambda key: getattr(over, key) if getattr(over, key) is not None else getattr(cfg, key)  # noqa: E731
    return {k: pick(k) for k in ("name", "lr", "betas", "momentum", "weight_decay")}


def _impl_flags(impl: str, name: str, device: torch.device) -> dict:
    if impl == "auto":
        # Fused Adam/SGD kernels exist for CUDA and CPU and make one pass over each tensor. On
        # CPU, foreach is a loop of per-tensor ops (~8 memory passes): measured here, an Adam step
        # over setup 001's G took 1.04 ms with foreach and 0.37 ms fused.
        fusable = device.type in ("cuda", "cpu") and name in ("adam", "sgd")
        impl = "fused" if fusable else "foreach"
    if impl == "fused":
        return {"fused": True}
    return {"foreach": impl == "foreach"}


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimConfig, which: str, device: torch.device
) -> torch.optim.Optimizer:
    s = resolved(cfg, which)
    flags = _impl_flags(cfg.impl, s["name"], device)
    if s["name"] == "adam":
        return torch.optim.Adam(params, lr=s["lr"], betas=tuple(s["betas"]), weight_decay=s["weight_decay"], **flags)
    if s["name"] == "sgd":
        return torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"], **flags)
    flags.pop("fused", None)  # RMSprop has no fused kernel
    return torch.optim.RMSprop(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"], **flags)


SCHEDULES = ("constant", "linear")


class Schedule:
    """The learning rates of a run's optimisers as a function of the step: `constant`, or `linear`
    decay from the configured rates to zero at the last step, starting at `decay_start` of the run.

    A function of the step alone, so a resumed run needs no saved state for it.
    """

    def __init__(self, cfg: OptimConfig, total_steps: int, optimizers: list[torch.optim.Optimizer]):
        self.kind, self.total = cfg.schedule, total_steps
        self.start = int(cfg.decay_start * total_steps)
        # The optimisers, not their groups: load_state_dict (a resume) replaces the group dicts.
        self.optimizers = optimizers
        self.base = [[g["lr"] for g in opt.param_groups] for opt in optimizers]

    def factor(self, step: int) -> float:
        if self.kind == "constant" or step < self.start:
            return 1.0
        return max(0.0, 1.0 - (step - self.start) / max(1, self.total - self.start))

    def apply(self, step: int) -> None:
        """Set every group's rate for the update that makes step `step` + 1."""
        if self.kind == "constant":
            return
        f = self.factor(step)
        for opt, rates in zip(self.optimizers, self.base):
            for group, base in zip(opt.param_groups, rates):
                group["lr"] = base * f
