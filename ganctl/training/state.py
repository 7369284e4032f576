"""The training state: everything a checkpoint holds, with state_dict() / load_state_dict()."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganctl.augment import Augment
from ganctl.config import RunConfig, to_dict
from ganctl.data import BatchSampler
from ganctl.devices import rng_state, set_rng_state
from ganctl.ema import EMA
from ganctl.errors import CheckpointError
from ganctl.training.cpu_kernels import without_dynamo
from ganctl.version import __version__


def load_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Restore the optimiser's moments and step counts, keeping this config's hyperparameters.

    load_state_dict alone would bring back the checkpoint's lr, so `resume=... optim.lr=X`
    would silently keep the old rate; with an unchanged config both are the same values.
    """
    hyper = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, values in zip(opt.param_groups, hyper):
        group.update(values)


@dataclass
class TrainingState:
    """G, D, their optimisers, G_ema, the data order, the random streams, the step and the best score.

    `state_dict()` is the checkpoint's payload: plain tensors and builtins (the config as a plain
    dict), so it loads with torch.load(weights_only=True). Its keys are those of format 1, which
    every ganctl so far has written.
    """

    cfg: RunConfig
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sampler: BatchSampler
    fixed_z: torch.Tensor  # the latents of every sample grid, so grids compare over time
    data_shape: tuple[int, ...]
    device: torch.device
    ema: EMA | None = None
    fixed_y: torch.Tensor | None = None  # the grid's class labels, for a conditional G
    classes: list[str] | None = None  # the class names, so `ganctl sample --class NAME` works
    step: int = 0
    best: float | None = None  # the best evaluation score so far (lower is better)
    # The fast-path pick (fast_paths.Paths.as_dict): a resume keeps it, since it changes the numbers.
    fast_path: dict | None = None
    augment: Augment | None = None  # D's augmentation; with trainer.augment_p=auto, its p is state

    @property
    def augment_p(self) -> float | None:
        """The augmentation probability now (a host sync for `auto`: once per log row), or None."""
        return None if self.augment is None else round(float(self.augment.p), 6)

    @property
    def G_sample(self) -> nn.Module:
        """The generator grids, evaluations and `ganctl sample` use: G_ema when kept."""
        return self.ema.model if self.ema is not None else self.G

    def state_dict(self) -> dict:
        with without_dynamo():
            opt_g, opt_d = self.opt_g.state_dict(), self.opt_d.state_dict()
        return {
            "ganctl_version": __version__,
            "config": to_dict(self.cfg),
            "step": self.step,
            "epoch": self.sampler.epoch,
            "data_shape": list(self.data_shape),
            "G": self.G.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema is not None else None,
            "D": self.D.state_dict(),
            "opt_g": opt_g,
            "opt_d": opt_d,
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(self.device),
            "fixed_z": self.fixed_z.cpu(),
            "fixed_y": None if self.fixed_y is None else self.fixed_y.cpu(),
            "classes": None if self.classes is None else list(self.classes),
            "best_metric": self.best,
            "fast_path": self.fast_path,
            # trainer.augment_p=auto's p and its part-counted interval (checkpoints before it: absent)
            "augment": self.augment.state_dict() if self.augment is not None and self.augment.adaptive else None,
        }

    def load_state_dict(self, ckpt: dict) -> None:
        """Every piece of training state from a checkpoint; the optimisers keep this config's settings."""
        try:
            self.G.load_state_dict(ckpt["G"])
            self.D.load_state_dict(ckpt["D"])
            with without_dynamo():
                load_optimizer(self.opt_g, ckpt["opt_g"])
                load_optimizer(self.opt_d, ckpt["opt_d"])
        except (RuntimeError, ValueError, KeyError) as exc:
            reason = str(exc).splitlines()[0][:200]
            raise CheckpointError(
                f"the checkpoint's weights do not fit this config's model ({reason}); "
                "resume with the architecture it was trained with"
            ) from None
        perm = ckpt["sampler"].get("perm")
        if perm is not None and len(perm) != self.sampler.n:
            # A folder that gained or lost images since: the saved data order no longer indexes it.
            raise CheckpointError(
                f"the checkpoint was trained on {len(perm)} samples, the dataset now holds {self.sampler.n}; "
                "accepted: resume on the same data, or start a new run"
            )
        self.sampler.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"], self.device)
        self.fixed_z = ckpt["fixed_z"].to(self.device)
        if ckpt.get("fixed_y") is not None:
            self.fixed_y = ckpt["fixed_y"].to(self.device)
        self.step = int(ckpt["step"])
        if self.augment is not None and self.augment.adaptive and ckpt.get("augment") is not None:
            self.augment.load_state_dict(ckpt["augment"])  # else (a fixed p before) auto starts at 0
        self.best = ckpt.get("best_metric")
        if self.ema is not None:
            self.ema.updates = self.step * self.cfg.trainer.g_steps  # every step made g_steps G updates
            if ckpt.get("G_ema") is not None:
                self.ema.load_state_dict(ckpt["G_ema"])
            else:  # EMA turned on at resume: average from the restored G, not from the initial one
                self.ema = self.ema.restart(self.G)
