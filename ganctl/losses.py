"""GAN objectives as pure functions of D's scores, and penalties as functions of D and its inputs.

Discriminators return raw scores. For the probabilistic losses D(x) = sigmoid(score), and
-log D(x) = softplus(-score), -log(1 - D(x)) = softplus(score): exactly what a sigmoid layer
followed by BCELoss computes, without its overflow (BCELoss clamps the log at -100).

A new loss is a pair of functions and one line in LOSSES; it knows nothing of the training step.
A run's penalties (the loss's own, R1) are `Penalty` records in the `Loss` that `for_run` builds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from ganctl.config import LossConfig

Tensor = torch.Tensor


def bce_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def bce_g(fake: Tensor) -> Tensor:
    """The non-saturating G loss -log D(G(z))."""
    return F.softplus(-fake).mean()


def minimax_g(fake: Tensor) -> Tensor:
    """The original saturating game: G minimises log(1 - D(G(z)))."""
    return -F.softplus(fake).mean()


def wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def wasserstein_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    """Lim & Ye 2017; SAGAN: D on max(0, 1 -+ score); G as the Wasserstein G."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    """Mao et al. 2017 with targets a=0, b=1, c=1."""
    return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()


def lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * (fake - 1).pow(2).mean()


def gradient_penalty(
    D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, scale: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Gulrajani et al. 2017's two-sided penalty E[(|grad D(x_hat)| - 1)^2] on random interpolates,
    and the mean gradient norm (detached) for the log.

    `scale` is fp16's loss scale: as PyTorch's AMP recipe does, the inner gradient is taken of the
    scaled output and unscaled afterwards, so that small input gradients do not underflow.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = D(mixed).float().sum()
    if scale is None:
        (grad,) = torch.autograd.grad(out, mixed, create_graph=True)
    else:
        (grad,) = torch.autograd.grad(out * scale, mixed, create_graph=True)
        grad = grad / scale
    norm = grad.flatten(1).norm(2, dim=1)
    return (norm - 1).pow(2).mean(), norm.mean().detach()


def r1_penalty(
    D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor | None = None, scale: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Mescheder et al. 2018's R1, E[|grad_x D(x)|^2] on real samples (to be weighted by gamma / 2),
    and the mean gradient norm (detached) for the log. It ignores `fake`; `scale` as in gradient_penalty."""
    x = real.detach().requires_grad_(True)
    out = D(x).float().sum()
    (grad,) = torch.autograd.grad(out if scale is None else out * scale, x, create_graph=True)
    if scale is not None:
        grad = grad / scale
    sq = grad.square().flatten(1).sum(1)
    return sq.mean(), sq.detach().sqrt().mean()


PenaltyFn = Callable[..., tuple[Tensor, Tensor]]  # (D, real, fake, scale) -> (value, logged norm)


@dataclass(frozen=True)
class Penalty:
    """A term of D's loss, fn(D, real, fake, scale) -> (value, logged norm), weighted by `weight`.

    With every > 1 it is computed on every `every`-th D update only, and weighted by
    `weight * every` there so that its average strength stays (StyleGAN2's lazy regularisation).
    """

    fn: PenaltyFn
    weight: float
    every: int = 1
    augmented: bool = False  # D sees the penalty's inputs through trainer.augment, as it sees real images


@dataclass(frozen=True)
class Loss:
    """D's objective of (real scores, fake scores), G's of fake scores, an optional penalty.

    `penalty` is the registry's own penalty (WGAN-GP's); `penalties` are the weighted terms a run
    adds to D's loss, in order, as `for_run` builds them from the config.
    """

    name: str
    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]
    penalty: PenaltyFn | None = None  # weighted by loss.gp_weight
    probabilistic: bool = False  # scores are logits: the log reports sigmoid(score) as D(x)
    penalties: tuple[Penalty, ...] = ()

    def report(self, scores: Tensor) -> Tensor:
        """D(x) as the log shows it: the mean probability, or the mean raw score."""
        return torch.sigmoid(scores).mean() if self.probabilistic else scores.mean()


LOSSES: dict[str, Loss] = {
    "bce": Loss("bce", bce_d, bce_g, probabilistic=True),
    "minimax": Loss("minimax", bce_d, minimax_g, probabilistic=True),
    "wgan_gp": Loss("wgan_gp", wasserstein_d, wasserstein_g, penalty=gradient_penalty),
    "hinge": Loss("hinge", hinge_d, wasserstein_g),
    "lsgan": Loss("lsgan", lsgan_d, lsgan_g),
}


def for_run(cfg: LossConfig) -> Loss:
    """The loss `cfg` names with its penalties: its own (weighted by loss.gp_weight), then R1."""
    loss = LOSSES[cfg.name]
    penalties = []
    if loss.penalty is not None:
        penalties.append(Penalty(loss.penalty, cfg.gp_weight))
    if cfg.r1_gamma > 0:
        # Mescheder et al. weigh R1 by gamma / 2. It is taken on the real images as D scores
        # them, through the augmentation.
        penalties.append(Penalty(r1_penalty, 0.5 * cfg.r1_gamma, cfg.r1_every, augmented=True))
    return replace(loss, penalties=tuple(penalties))
