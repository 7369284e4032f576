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
from typing import Callable, NamedTuple

import torch
from torch import nn

from ganctl.augment import ADA_INTERVAL, Augment
from ganctl.losses import Loss
from ganctl.training.distributed import Rank


class DStats(NamedTuple):
    """A D update's raw material for the log, detached and kept on the device until a log row."""

    loss: torch.Tensor
    real: torch.Tensor  # D's scores of the real batch
    fake: torch.Tensor  # and of the fake batch
    grad_norm: torch.Tensor  # the last penalty's latest gradient norm (0 without a penalty)


class StepStats(NamedTuple):
    """A log row's statistics of the step: tensors from `summarise`, floats once reduced."""

    d_loss: torch.Tensor | float
    d_real: torch.Tensor | float  # D(x) as the loss reports it
    d_fake: torch.Tensor | float  # D(G(z))
    grad_norm: torch.Tensor | float
    g_loss: torch.Tensor | float


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
        self.ada: Augment | None = None  # trainer.augment_p=auto: the augmentation whose p D's scores steer

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
        if self.ada is not None:
            self.ada.observe(stats.real)
            if self.d_updates % ADA_INTERVAL == 0:
                self.ada.adjust(self.rank.sum)  # every replica's scores: all replicas keep one p
        return stats

    def g_phase(self) -> torch.Tensor | None:
        """One G update; its detached loss, or None when trainer.on_nan=skip dropped it."""
        loss = self.g_grads()
        if self._bad(loss):
            return None
        self._step_g()
        return loss.detach()

    def summarise(self, d_stats: list[DStats], g_losses: list[torch.Tensor]) -> StepStats:
        """Each statistic's mean over the updates the log row covers."""
        losses, reals, fakes, norms = zip(*d_stats)
        return StepStats(
            d_loss=torch.stack(losses).mean(),
            d_real=self.loss.report(torch.cat(reals)),
            d_fake=self.loss.report(torch.cat(fakes)),
            grad_norm=torch.stack(norms).mean(),
            g_loss=torch.stack(g_losses).mean(),
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

    `G_run`/`D_run` are the wrapped modules the phases call; `D_penalty` scores the penalties'
    inputs: D without torch.compile, whose AOTAutograd cannot differentiate twice.

    With trainer.batch_gpu=K each phase runs its batch in chunks of K rows: every loss is a mean
    over rows, so each chunk's loss is weighted by K / batch and the gradients summed in .grad
    are the full batch's (up to float summation order). The latents and labels are drawn for the
    whole batch first, so without batch statistics or random transforms the chunks compute the same
    function; augmentation and the penalties' interpolates draw per chunk (other draws, the same
    distribution), batch norm normalises per chunk, and spectral norm's power iteration runs once
    per forward pass, so once per chunk (docs/ARCHITECTURE.md).
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
        cuda_graphs: bool = False,
        augment: Augment | None = None,
        batch_gpu: int | None = None,
        ddp: tuple[nn.Module, ...] = (),
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # D sees every batch, real or fake, in both phases through the same random augmentation.
        self.augment = augment or (lambda x: x)
        self.ada = augment if augment is not None and augment.adaptive else None
        # Each penalty's latest gradient norm: a lazy penalty's steps in between log its last one.
        self._norms = [torch.zeros((), device=self.device) for _ in self.loss.penalties]
        # compile_mode=reduce-overhead/max-autotune replay CUDA graphs, whose outputs are overwritten
        # by the next replay: the log keeps copies, and each phase (each chunk) opens a new graph step.
        self.cuda_graphs = cuda_graphs
        self.G_run, self.D_run, self.D_g_phase, self.D_penalty = G_run, D_run, D_g_phase, D_penalty
        self.joint, self.shuffled = joint, shuffled
        self.g_params = list(self.G.parameters())
        self.d_params = [p for p in self.D.parameters() if p.requires_grad]
        self._no_penalty = torch.zeros((), device=self.device)
        # Without batch_gpu one chunk, the whole batch, whatever its size.
        self.chunks = (
            [slice(None)] if not batch_gpu else [slice(i, i + batch_gpu) for i in range(0, self.batch, batch_gpu)]
        )
        self.ddp = ddp

    def _chunk(self, i: int) -> contextlib.AbstractContextManager:
        """The context of chunk i's forward and backward: DDP all-reduces the last chunk's only."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        stack = contextlib.ExitStack()
        if i < len(self.chunks) - 1:
            for module in self.ddp:
                stack.enter_context(module.no_sync())
        return stack

    def _share(self, loss: torch.Tensor) -> torch.Tensor:
        """A chunk's loss weighted by its share of the batch (unchanged without chunks)."""
        return loss if len(self.chunks) == 1 else loss * (1.0 / len(self.chunks))

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
        autocast = self.precision.autocast
        z = self.latent(self.batch)
        kept = []
        for i, c in enumerate(self.chunks):
            y = None if labels is None else labels[c]
            with self._chunk(i):
                # A conditional D sees the fake batch under the real batch's labels: the same classes
                # in both halves, and one label per row for the penalties' interpolates.
                with torch.no_grad(), autocast():
                    fake = self._G(z[c], y)
                with autocast():
                    s_real, s_fake = self.scores(real[c], fake, y)
                    loss = self.loss.d(s_real, s_fake)
                    if self.shuffled:
                        loss = 0.5 * loss  # one mean over both halves = half the sum of the two means
                    loss = self._share(self._penalised(loss, real[c], fake, y))
                if i == 0:
                    self.opt_d.zero_grad(set_to_none=True)
                self.precision.scale("d", loss).backward()
            kept.append(self._kept(loss, s_real, s_fake))
        self.d_updates += 1
        losses, reals, fakes = zip(*kept)
        loss = losses[0] if len(kept) == 1 else torch.stack(losses).sum()
        # With a lazy penalty, its latest norm: the last chunk's on the update it was due.
        grad_norm = self._norms[-1] if self._norms else self._no_penalty
        whole = (lambda parts: parts[0]) if len(kept) == 1 else torch.cat
        return loss, DStats(loss, whole(reals), whole(fakes), *self._kept(grad_norm))

    def _penalised(
        self, loss: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        """D's loss plus the loss's penalties that are due at this D update."""
        for i, p in enumerate(self.loss.penalties):
            if self.d_updates % p.every:
                continue
            view = self.augment if p.augmented else (lambda x: x)
            value, self._norms[i] = p.fn(
                lambda x: self._D(self.D_penalty, view(x), labels),
                real,
                fake,
                self.precision.scale_factor("d", self.device),
            )
            loss = loss + (p.weight * p.every) * value
        return loss

    def g_grads(self):
        # D's weights are constants in this phase. Recording no gradient for them skips their dW
        # products even in custom autograd functions (oneDNN Linear), which cannot see
        # backward's inputs= pruning. D_g_phase is D outside DDP: nothing of D's to all-reduce.
        z = self.latent(self.batch)
        y = torch.randint(self.n_classes, (self.batch,), device=self.device) if self.n_classes else None
        losses = []
        for i, c in enumerate(self.chunks):
            yc = None if y is None else y[c]
            with self._chunk(i):
                with frozen(self.d_params), self.precision.autocast():
                    scores = self._D(self.D_g_phase, self.augment(self._G(z[c], yc)), yc).float()
                    loss = self._share(self.loss.g(scores))
                if i == 0:
                    self.opt_g.zero_grad(set_to_none=True)
                self.precision.scale("g", loss).backward(inputs=self.g_params)
            losses.append(self._kept(loss)[0] if self.cuda_graphs else loss)
        return losses[0] if len(losses) == 1 else torch.stack([x.detach() for x in losses]).sum()
