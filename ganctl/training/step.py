"""The GAN step: one object owns G, D, their optimisers, the loss and the precision, and runs a phase.

As StyleGAN2-ADA's `loss.accumulate_gradients(phase)`: the loop calls `d_phase(real)` d_steps
times, then `g_phase()` g_steps times. Each phase computes its network's gradients (subclasses:
`AutogradStep` here, `ManualStep` in manual_step.py for MLPs on CPU), then the shared code here
checks them when trainer.on_nan=skip and applies the optimiser. `build_step` picks the
implementation once, at start-up.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch
from torch import nn

from ganctl.losses import Loss, r1_penalty
from ganctl.training.distributed import Rank

# A D phase's raw material for the log, kept on the device until a log row reduces it:
# (loss, real scores, fake scores, penalty gradient norm), all detached.
DStats = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class Precision:
    """Autocast for bf16/fp16 and, for fp16, one gradient scaler per network."""

    def __init__(self, precision: str, device: torch.device):
        if precision not in ("fp32", "bf16", "fp16"):  # `auto` is resolved before a step is built
            raise ValueError(f"precision {precision!r}: expected fp32, bf16 or fp16")
        self.name = precision
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        if precision != "fp32":
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            self.autocast = functools.partial(torch.autocast, device_type=device.type, dtype=dtype)
        if precision == "fp16":
            # fp16 gradients underflow without loss scaling; D and G get one scaler each.
            self.scalers = {"d": torch.amp.GradScaler(device.type), "g": torch.amp.GradScaler(device.type)}

    def scale(self, which: str, loss: torch.Tensor) -> torch.Tensor:
        scaler = self.scalers.get(which)
        return loss if scaler is None else scaler.scale(loss)

    def scale_factor(self, which: str, device: torch.device) -> torch.Tensor | None:
        """The current loss scale as a device tensor (no host sync), or None without scaling."""
        scaler = self.scalers.get(which)
        return None if scaler is None else scaler.scale(torch.ones((), device=device))

    def stepper(self, which: str, opt: torch.optim.Optimizer) -> Callable[[], None]:
        scaler = self.scalers.get(which)
        if scaler is None:
            return opt.step

        def step() -> None:
            scaler.step(opt)
            scaler.update()

        return step


class GANStep:
    """The phases of one training iteration; subclasses compute the gradients."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        loss: Loss,
        latent: Callable[[int], torch.Tensor],
        batch: int,
        precision: Precision,
        skip_nonfinite: bool,
        rank: Rank,
        device: torch.device,
        n_classes: int = 0,
    ):
        self.n_classes = n_classes  # > 0: G and D take class labels (model.conditional)
        self.G, self.D, self.opt_g, self.opt_d, self.loss = G, D, opt_g, opt_d, loss
        self.latent, self.batch, self.precision = latent, batch, precision
        self.skip_nonfinite, self.rank, self.device = skip_nonfinite, rank, device
        self._step_d, self._step_g = precision.stepper("d", opt_d), precision.stepper("g", opt_g)
        self.d_updates = 0  # D updates so far, for the lazy R1 (build sets it on resume)

    name = "step"

    def d_grads(self, real: torch.Tensor, labels: torch.Tensor | None, last: bool) -> tuple[torch.Tensor, DStats]:
        """D's loss and log stats on a real batch (with its class labels for a conditional model)
        and a fresh fake batch; D's gradients in .grad. `last` marks the phase's last D update (the
        manual step draws the G phase's latents then)."""
        raise NotImplementedError

    def g_grads(self) -> torch.Tensor:
        """G's loss through the current D on fresh latents; G's gradients in .grad."""
        raise NotImplementedError

    def _bad(self, loss: torch.Tensor) -> bool:
        # A host sync (and an all-reduce over replicas), only in skip mode.
        return self.skip_nonfinite and bool(self.rank.any(not torch.isfinite(loss).item(), self.device))

    def d_phase(self, real: torch.Tensor, labels: torch.Tensor | None = None, last: bool = True) -> DStats | None:
        """One D update; None when trainer.on_nan=skip dropped it."""
        loss, stats = self.d_grads(real, labels, last)
        if self._bad(loss):
            return None
        self._step_d()
        return stats

    def g_phase(self) -> torch.Tensor | None:
        """One G update; its detached loss, or None when trainer.on_nan=skip dropped it."""
        loss = self.g_grads()
        if self._bad(loss):
            return None
        self._step_g()
        return loss.detach()

    def summarise(self, raws: list[DStats]) -> torch.Tensor:
        """[loss, D(x), D(G(z)), grad norm], each the mean over the D updates in `raws`."""
        losses, reals, fakes, norms = zip(*raws)
        return torch.stack(
            [
                torch.stack(losses).mean(),
                self.loss.report(torch.cat(reals)),
                self.loss.report(torch.cat(fakes)),
                torch.stack(norms).mean(),
            ]
        )


@contextlib.contextmanager
def frozen(params: list[torch.Tensor]):
    """Parameters that record no gradient inside the block (their requires_grad is restored)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class AutogradStep(GANStep):
    """Any G, D and loss through autograd, optionally wrapped in DDP and torch.compile.

    `G_run`/`D_run` are the wrapped modules the phases call; `D_penalty` scores the gradient
    penalty's interpolates: D without torch.compile, whose AOTAutograd cannot differentiate twice.
    """

    name = "autograd"

    def __init__(
        self,
        *args,
        G_run: nn.Module,
        D_run: nn.Module,
        D_g_phase: nn.Module,
        D_penalty: nn.Module,
        joint: bool,
        shuffled: bool,
        gp_weight: float,
        cuda_graphs: bool = False,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        r1_gamma: float = 0.0,
        r1_every: int = 1,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.gp_weight = gp_weight
        # D sees every batch, real or fake, in both phases through the same random augmentation.
        self.augment = augment or (lambda x: x)
        self.r1_gamma, self.r1_every = r1_gamma, r1_every
        self._r1_norm = torch.zeros((), device=self.device)
        # compile_mode=reduce-overhead/max-autotune replay CUDA graphs, whose outputs are overwritten
        # by the next replay: the log keeps copies, and each phase opens a new graph step.
        self.cuda_graphs = cuda_graphs
        self.G_run, self.D_run, self.D_g_phase, self.D_penalty = G_run, D_run, D_g_phase, D_penalty
        self.joint, self.shuffled = joint, shuffled
        self.g_params = list(self.G.parameters())
        self.d_params = [p for p in self.D.parameters() if p.requires_grad]
        self._no_penalty = torch.zeros((), device=self.device)

    def _G(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.G_run(z) if y is None else self.G_run(z, y)

    @staticmethod
    def _D(D: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return D(x) if y is None else D(x, y)

    def scores(
        self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """D's raw scores of a real and a fake batch, in fp32 whatever the autocast dtype: a critic's
        unbounded scores lose their differences when averaged in half precision."""
        n = real.shape[0]
        if self.shuffled:
            # Setup 004: real and fake in one randomly permuted batch.
            x = self.augment(torch.cat([real, fake]))
            perm = torch.randperm(x.shape[0], device=x.device)
            yy = None if y is None else torch.cat([y, y])[perm]
            s = self._D(self.D_run, x[perm], yy)[torch.argsort(perm)].float()
            return s[:n], s[n:]
        if self.joint:
            # One pass over both batches: the same function for a D without batch statistics
            # and, at these sizes, faster (half the launches, wider matmuls).
            yy = None if y is None else torch.cat([y, y])
            s = self._D(self.D_run, self.augment(torch.cat([real, fake])), yy).float()
            return s.split([n, fake.shape[0]])
        return self._D(self.D_run, self.augment(real), y).float(), self._D(self.D_run, self.augment(fake), y).float()

    def _kept(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Detached tensors the log keeps past this phase (copies where CUDA graphs reuse memory)."""
        return tuple(t.detach().clone() if self.cuda_graphs else t.detach() for t in tensors)

    def d_grads(self, real, labels=None, last=True):
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        autocast = self.precision.autocast
        # A conditional D sees the fake batch under the real batch's labels: the same classes in
        # both halves, and one label per row for the penalties' interpolates.
        with torch.no_grad(), autocast():
            fake = self._G(self.latent(self.batch), labels)
        with autocast():
            s_real, s_fake = self.scores(real, fake, labels)
            loss = self.loss.d(s_real, s_fake)
            if self.shuffled:
                loss = 0.5 * loss  # one mean over both halves = half the sum of the two means
            grad_norm = self._no_penalty
            if self.loss.penalty is not None:
                gp, grad_norm = self.loss.penalty(
                    lambda x: self._D(self.D_penalty, x, labels),
                    real,
                    fake,
                    self.precision.scale_factor("d", self.device),
                )
                loss = loss + self.gp_weight * gp
            if self.r1_gamma > 0 and self.d_updates % self.r1_every == 0:
                # Its own pass of D on the real batch, uncompiled as the penalty's; lazily every
                # r1_every updates and scaled by r1_every to keep the same average strength.
                r1, self._r1_norm = r1_penalty(
                    lambda x: self._D(self.D_penalty, self.augment(x), labels),
                    real,
                    self.precision.scale_factor("d", self.device),
                )
                loss = loss + (0.5 * self.r1_gamma * self.r1_every) * r1
            if self.r1_gamma > 0:
                grad_norm = self._r1_norm  # the latest, so lazy steps do not average in zeros
        self.d_updates += 1
        self.opt_d.zero_grad(set_to_none=True)
        self.precision.scale("d", loss).backward()
        return loss, self._kept(loss, s_real, s_fake, grad_norm)

    def g_grads(self):
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        # D's weights are constants in this phase. Recording no gradient for them skips their dW
        # products even in custom autograd functions (oneDNN Linear), which cannot see
        # backward's inputs= pruning. D_g_phase is D outside DDP: nothing of D's to all-reduce.
        with frozen(self.d_params), self.precision.autocast():
            z = self.latent(self.batch)
            y = torch.randint(self.n_classes, (self.batch,), device=self.device) if self.n_classes else None
            loss = self.loss.g(self._D(self.D_g_phase, self.augment(self._G(z, y)), y).float())
        self.opt_g.zero_grad(set_to_none=True)
        self.precision.scale("g", loss).backward(inputs=self.g_params)
        return self._kept(loss)[0] if self.cuda_graphs else loss
