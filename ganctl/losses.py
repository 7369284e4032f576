"""GAN objectives. Each loss owns the two phases of an iteration: the D step and the G step.

Discriminators return raw scores. For the probabilistic losses D(x) = sigmoid(score), and
-log D(x) = softplus(-score), -log(1 - D(x)) = softplus(score): exactly what a sigmoid layer
followed by BCELoss computes, without its overflow (BCELoss clamps the log at -100).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganctl.config import LossConfig


class GANLoss:
    """D and G objectives on raw scores; `d_phase` and `g_phase` run the networks."""

    probabilistic = False  # report sigmoid(score) as D(x) instead of the raw score

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg

    def d_objective(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_objective(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        return None

    def d_phase(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                joint: bool = False) -> tuple[torch.Tensor, tuple]:
        """D's loss on a real batch and a detached fake batch, and the raw material of its log row:
        detached (loss, real scores, fake scores, penalty gradient norm), for `summarise`.

        joint=True scores both batches in one forward pass, which is the same function for a D
        without batch statistics and, at these sizes, faster: half the launches, wider matmuls.
        """
        if self.cfg.d_batch == "shuffled":
            # Setup 004: real and fake in one randomly permuted batch, one mean BCE over both
            # halves, i.e. half the sum of the two means.
            x = torch.cat([real, fake])
            perm = torch.randperm(x.shape[0], device=x.device)
            scores = D(x[perm])[torch.argsort(perm)]
            s_real, s_fake = scores[: real.shape[0]], scores[real.shape[0] :]
            loss = 0.5 * self.d_objective(s_real, s_fake)
        elif joint:
            s_real, s_fake = D(torch.cat([real, fake])).split([real.shape[0], fake.shape[0]])
            loss = self.d_objective(s_real, s_fake)
        else:
            s_real, s_fake = D(real), D(fake)
            loss = self.d_objective(s_real, s_fake)
        extra = self.penalty(D, real, fake)
        if extra is not None:
            gp, grad_norm = extra
            loss = loss + self.cfg.gp_weight * gp
        else:
            grad_norm = torch.zeros((), device=real.device)
        # Reduced only at log time (summarise): no per-step ops for logging.
        return loss, (loss.detach(), s_real.detach(), s_fake.detach(), grad_norm.detach())

    def summarise(self, raws: list[tuple]) -> torch.Tensor:
        """[loss, D(x), D(G(z)), grad norm], each the mean over the D updates in `raws`."""
        losses, reals, fakes, norms = zip(*raws)
        return torch.stack([torch.stack(losses).mean(), self.report(torch.cat(reals)),
                            self.report(torch.cat(fakes)), torch.stack(norms).mean()])

    def g_phase(self, D: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        return self.g_objective(D(fake))

    # The manual step (ganctl/manual_step.py) backpropagates by hand from the scores' gradients.
    # These defaults take them from autograd on the scores alone; losses with a simple closed
    # form override them.
    def d_grads(self, s_real: torch.Tensor, s_fake: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """D's loss (detached) and its gradients with respect to the real and the fake scores."""
        with torch.enable_grad():
            r, f = s_real.detach().requires_grad_(), s_fake.detach().requires_grad_()
            loss = self.d_objective(r, f)
            g_real, g_fake = torch.autograd.grad(loss, (r, f))
        return loss.detach(), g_real, g_fake

    def g_grad(self, s_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G's loss (detached) and its gradient with respect to the fake scores."""
        with torch.enable_grad():
            f = s_fake.detach().requires_grad_()
            loss = self.g_objective(f)
            (grad,) = torch.autograd.grad(loss, f)
        return loss.detach(), grad

    def report(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(scores).mean() if self.probabilistic else scores.mean()


class BCE(GANLoss):
    """Goodfellow's D loss with the non-saturating G loss -log D(G(z))."""

    probabilistic = True

    def d_objective(self, real, fake):
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_objective(self, fake):
        return F.softplus(-fake).mean()

    # d softplus(x)/dx = sigmoid(x)
    def d_grads(self, s_real, s_fake):
        return (self.d_objective(s_real, s_fake), torch.sigmoid(s_real).sub_(1).div_(s_real.numel()),
                torch.sigmoid(s_fake).div_(s_fake.numel()))

    def g_grad(self, s_fake):
        return self.g_objective(s_fake), torch.sigmoid(s_fake).sub_(1).div_(s_fake.numel())


class Minimax(BCE):
    """The original saturating game: G minimises log(1 - D(G(z)))."""

    def g_objective(self, fake):
        return -F.softplus(fake).mean()

    def g_grad(self, s_fake):
        return self.g_objective(s_fake), torch.sigmoid(s_fake).neg_().div_(s_fake.numel())


class WGANGP(GANLoss):
    """Wasserstein critic with the two-sided gradient penalty of Gulrajani et al. 2017."""

    def d_objective(self, real, fake):
        return fake.mean() - real.mean()

    def g_objective(self, fake):
        return -fake.mean()

    def penalty(self, D, real, fake):
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
        norm = grad.flatten(1).norm(2, dim=1)
        return (norm - 1).pow(2).mean(), norm.mean().detach()


class Hinge(GANLoss):
    """Hinge loss (Lim & Ye 2017; SAGAN): D on max(0, 1 -+ score), G on -score."""

    def d_objective(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_objective(self, fake):
        return -fake.mean()


class LSGAN(GANLoss):
    """Least squares GAN (Mao et al. 2017) with targets a=0, b=1, c=1."""

    def d_objective(self, real, fake):
        return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()

    def g_objective(self, fake):
        return 0.5 * (fake - 1).pow(2).mean()


LOSSES: dict[str, type[GANLoss]] = {
    "bce": BCE,
    "minimax": Minimax,
    "wgan_gp": WGANGP,
    "hinge": Hinge,
    "lsgan": LSGAN,
}


def build_loss(cfg: LossConfig) -> GANLoss:
    return LOSSES[cfg.name](cfg)
