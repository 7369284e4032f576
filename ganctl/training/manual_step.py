"""trainer.backward=manual: the MLP GAN step with hand-written gradients instead of autograd.

At setup 001's sizes one step is about twenty matrix products of a few hundred microseconds each,
and autograd adds its own work around them: graph nodes, saved tensors, the Python of the oneDNN
layer's autograd.Function on every call, and a second G forward pass for the G phase. A fully
connected G and D with plain activations have gradients simple enough to write out, so this
module computes them directly:

- One G forward pass on 2B latents serves both phases: D's update uses the first B samples
  (detached), G's update backpropagates through the other B. G's weights do not change during
  D's update, so this is the same function as two passes; the latents are drawn in the same order
  as the autograd step draws them, so both produce the same numbers up to float rounding.
- Each layer's activation runs inside its oneDNN product (the fused epilogue), and its backward
  uses the layer's output, as autograd's kernels for these activations do.
- D's backward in the G phase computes input gradients only, and G's backward uses only the rows
  the G phase scored.
- Dropout (setup 004's D) keeps its scaled mask for backward; setup 004's shuffled batch is
  scored in its shuffled order and its gradient put back in that order. Both draw random numbers
  in D's forward pass, so there G runs one pass per phase, keeping the random stream in the
  autograd step's order.

Gradients land in the parameters' `.grad`, so the optimisers, checkpoints, EMA and the NaN guard
are the ones the autograd step uses. `tests/test_manual_step.py` compares both steps.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganctl.config import RunConfig
from ganctl.losses import Loss
from ganctl.models.mlp import BatchMoments
from ganctl.training.cpu_kernels import Dropout, Linear, _activation_backward, _mm_t, _post_op, dropout_mask
from ganctl.training.step import GANStep

FUSABLE = ("relu", "leaky_relu", "tanh", "sigmoid")

_APPLY: dict[str, Callable[[torch.Tensor, list], torch.Tensor]] = {
    "none": lambda y, args: y,
    "relu": lambda y, args: y.relu_(),
    "leaky_relu": lambda y, args: F.leaky_relu_(y, args[0]),
    "tanh": lambda y, args: y.tanh_(),
    "sigmoid": lambda y, args: y.sigmoid_(),
}


def unsupported(cfg: RunConfig, world: int | None = None) -> str | None:
    """Why this run cannot use the manual step (a phrase naming the setting), or None if it can."""
    m, t, lo = cfg.model, cfg.trainer, cfg.loss
    reasons = [
        (m.arch != "mlp", f"model.arch={m.arch} (only mlp)"),
        (m.g_act not in FUSABLE, f"model.g_act={m.g_act} (only {', '.join(FUSABLE)})"),
        (m.d_act not in FUSABLE, f"model.d_act={m.d_act} (only {', '.join(FUSABLE)})"),
        (m.g_norm != "none", f"model.g_norm={m.g_norm} (only none)"),
        (m.d_norm != "none", f"model.d_norm={m.d_norm} (only none)"),
        (
            m.d_features == "moments" and lo.d_batch == "shuffled",
            "model.d_features=moments with loss.d_batch=shuffled (only separate batches)",
        ),
        (lo.name == "wgan_gp", "loss=wgan_gp (its gradient penalty needs autograd's double backward)"),
        (lo.r1_gamma > 0, "loss.r1_gamma > 0 (R1 needs autograd's double backward)"),
        (m.d_spectral_norm, "model.d_spectral_norm=true"),
        (m.conditional, "model.conditional=true"),
        (bool(t.augment), f"trainer.augment={list(t.augment)} (only [])"),
        (t.precision != "fp32", f"trainer.precision={t.precision} (only fp32)"),
        (t.compile, "trainer.compile=true"),
        (world is None and t.devices > 1, f"trainer.devices={t.devices} (DDP reduces gradients through autograd)"),
        (world is not None and world > 1, f"{world} processes (DDP reduces gradients through autograd)"),
    ]
    return next((reason for failed, reason in reasons if failed), None)


class Trace:
    """What a forward pass keeps for backward: each layer's input, its activation's output, and
    its dropout mask (already scaled by 1/keep) or None."""

    def __init__(self):
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []
        self.out: torch.Tensor | None = None


class Chain:
    """An MLP's Stack as layers of (Linear, activation name, activation args, Dropout or None)."""

    def __init__(self, stack: nn.Sequential):
        mods = [m for m in stack if not isinstance(m, nn.Flatten)]
        self.layers: list[tuple[nn.Linear, str, list, Dropout | None]] = []
        i = 0
        while i < len(mods):
            lin = mods[i]
            if not isinstance(lin, nn.Linear):
                raise ValueError(f"manual step: {type(lin).__name__} where a Linear layer was expected")
            post: tuple[str, list] | None = ("none", [])
            if i + 1 < len(mods) and not isinstance(mods[i + 1], (nn.Linear, nn.Dropout)):
                act = mods[i + 1]
                post = ("none", []) if isinstance(act, nn.Identity) else _post_op(act)
                if post is None:
                    raise ValueError(f"manual step: no fused form of {type(act).__name__}")
                i += 1
            drop = None
            if i + 1 < len(mods) and isinstance(mods[i + 1], nn.Dropout):
                drop = mods[i + 1]
                if not isinstance(drop, Dropout) or drop.inplace or drop.p >= 1:
                    # Masks must come from dropout_mask, as cpu_kernels.Dropout draws them.
                    raise ValueError(f"manual step: {drop!r} is not ganctl's CPU Dropout with 0 <= p < 1")
                i += 1
            self.layers.append((lin, *post, drop))
            i += 1
        # Dropout draws random numbers inside the forward pass.
        self.random = any(d is not None and d.p > 0 for *_, d in self.layers)

    @staticmethod
    def _mm(fast: bool, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a @ b, on oneDNN where the layer's forward is (every product of a layer on the same rows
        has the forward's size, so the forward's choice holds for all of them)."""
        return _mm_t(a, b.t()) if fast else a @ b

    def forward(self, x: torch.Tensor) -> Trace:
        trace = Trace()
        for lin, post, args, drop in self.layers:
            trace.inputs.append(x)
            if _fast(lin, x):
                x = _mm_t(x, lin.weight, lin.bias, post, args)
            else:
                x = _APPLY[post](F.linear(x, lin.weight, lin.bias), args)
            trace.outputs.append(x)
            mask = None
            if drop is not None and drop.training and drop.p > 0:
                # models.Dropout's mask on CPU, from the same random numbers. (On other devices
                # models.Dropout uses PyTorch's kernel: the same distribution, another stream.)
                mask = dropout_mask(x, drop.p)
                x = x * mask
            trace.masks.append(mask)
        trace.out = x
        return trace

    def backward(
        self,
        trace: Trace,
        grad: torch.Tensor,
        rows: slice | None = None,
        weight_grads: bool = True,
        input_grad: bool = False,
    ) -> torch.Tensor | None:
        """Backpropagate `grad` (of the output's `rows`) from the output to the input.

        weight_grads sets each parameter's .grad; input_grad returns the input's gradient.
        """
        pick = (lambda a: a) if rows is None else (lambda a: a[rows])
        for k in range(len(self.layers) - 1, -1, -1):
            lin, post, args, _ = self.layers[k]
            if trace.masks[k] is not None:
                grad = grad * pick(trace.masks[k])
            grad = _activation_backward(grad, pick(trace.outputs[k]), post, args)
            x = pick(trace.inputs[k])
            fast = _fast(lin, x)
            if weight_grads:
                lin.weight.grad = self._mm(fast, grad.t(), x)
                if lin.bias is not None:
                    lin.bias.grad = grad.sum(0)
            if k == 0 and not input_grad:
                return None
            grad = self._mm(fast, grad, lin.weight)
        return grad


def _fast(lin: nn.Linear, x: torch.Tensor) -> bool:
    return isinstance(lin, Linear) and lin.fast(x)


# Closed forms of the score gradients of the BCE-type losses (d softplus(x)/dx = sigmoid(x)); other
# losses take them from autograd on the scores alone (score_grads).
def _bce_d_grads(loss: Loss, s_real, s_fake):
    return (
        loss.d(s_real, s_fake),
        torch.sigmoid(s_real).sub_(1).div_(s_real.numel()),
        torch.sigmoid(s_fake).div_(s_fake.numel()),
    )


CLOSED_FORM_D = {"bce": _bce_d_grads, "minimax": _bce_d_grads}
CLOSED_FORM_G = {
    "bce": lambda loss, s: (loss.g(s), torch.sigmoid(s).sub_(1).div_(s.numel())),
    "minimax": lambda loss, s: (loss.g(s), torch.sigmoid(s).neg_().div_(s.numel())),
}


def score_grads(loss: Loss, s_real: torch.Tensor, s_fake: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """D's loss (detached) and its gradients with respect to the real and the fake scores."""
    if loss.name in CLOSED_FORM_D:
        return CLOSED_FORM_D[loss.name](loss, s_real, s_fake)
    with torch.enable_grad():
        r, f = s_real.detach().requires_grad_(), s_fake.detach().requires_grad_()
        value = loss.d(r, f)
        g_real, g_fake = torch.autograd.grad(value, (r, f))
    return value.detach(), g_real, g_fake


def score_grad(loss: Loss, s_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """G's loss (detached) and its gradient with respect to the fake scores."""
    if loss.name in CLOSED_FORM_G:
        return CLOSED_FORM_G[loss.name](loss, s_fake)
    with torch.enable_grad():
        f = s_fake.detach().requires_grad_()
        value = loss.g(f)
        (grad,) = torch.autograd.grad(value, f)
    return value.detach(), grad


def moments(x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """Setup 002's D input, as models.mlp.BatchMoments computes it (the same ops): one row of
    (mean, std, skewness, excess kurtosis) of the whole batch, and what its backward needs."""
    v = x.reshape(-1)
    var, mean = torch.var_mean(v, correction=0)
    std = var.sqrt()
    z = (v - mean) / std
    z2 = z * z
    k3, k4 = torch.dot(z2, z) / z.numel(), torch.dot(z2, z2) / z.numel()
    return torch.stack([mean, std, k3, k4 - 3.0]).unsqueeze(0), (z, std, k3, k4)


def moments_backward(grad: torch.Tensor, saved: tuple) -> torch.Tensor:
    """The batch's gradient from the gradient (4,) of its moments row.

    With z = (x - mean) / std over n values (population std), d mean/dx_i = 1/n, d std/dx_i = z_i/n,
    d mean(z^3)/dx_i = 3 (z_i^2 - 1 - k3 z_i) / (n std), d mean(z^4)/dx_i = 4 (z_i^3 - k3 - k4 z_i) / (n std),
    where k3, k4 are mean(z^3), mean(z^4): a cubic in z_i, evaluated by Horner's rule.
    """
    z, std, k3, k4 = saved
    n = z.numel()
    g_mean, g_std, g_3, g_4 = grad.unbind()
    c3, c4 = 3 * g_3 / (n * std), 4 * g_4 / (n * std)
    const = g_mean / n - c3 - c4 * k3
    lin = g_std / n - c3 * k3 - c4 * k4
    return (const + z * (lin + z * (c3 + z * c4))).unsqueeze(1)


class ManualStep(GANStep):
    """The D and G phases of an MLP GAN; each leaves its network's gradients in .grad."""

    name = "manual"

    def __init__(self, *args, shuffled: bool, **kwargs):
        super().__init__(*args, **kwargs)
        # Setup 002's D scores the whole batch's moments: one row per batch, then an MLP.
        self.moments = isinstance(self.D.net[0], BatchMoments)
        self.G_chain, self.D_chain = Chain(self.G.net), Chain(self.D.net[1:] if self.moments else self.D.net)
        self.shuffled = shuffled
        # One G pass for both phases draws the G phase's latents early. Where the D phase draws
        # random numbers of its own (dropout, the shuffle), that would change the order of the
        # random stream against the autograd step, so G runs twice there.
        self.shared_g = not (self.D_chain.random or self.shuffled)
        self._next_g: Trace | None = None  # G's pass on the G phase's latents
        self._no_penalty = torch.zeros((), device=self.device)  # the log row's grad norm

    @torch.no_grad()
    def d_grads(self, real, labels=None, last=True):
        """With `last` (and where shared_g), G's forward pass also covers the next G phase's
        latents, drawn right after D's."""
        b, n_real = self.batch, real.shape[0]
        both = last and self.shared_g
        z = self.latent(b)
        if both:
            z = torch.cat([z, self.latent(b)])
        g_trace = self.G_chain.forward(z)
        self._next_g = g_trace if both else None
        if self.moments:  # one moments row per batch: real's and fake's scored in one pass
            x, n_real = torch.cat([moments(real)[0], moments(g_trace.out[:b])[0]]), 1
        else:
            x = torch.cat([real.reshape(n_real, -1), g_trace.out[:b]])
        if self.shuffled:
            # Setup 004's one shuffled batch and one mean BCE over it (see AutogradStep.scores).
            perm = torch.randperm(x.shape[0], device=x.device)
            d_trace = self.D_chain.forward(x[perm])
            scores = d_trace.out[:, 0][torch.argsort(perm)]
        else:
            d_trace = self.D_chain.forward(x)
            scores = d_trace.out[:, 0]
        s_real, s_fake = scores[:n_real], scores[n_real:]
        loss, g_real, g_fake = score_grads(self.loss, s_real, s_fake)
        grad = torch.cat([g_real, g_fake])
        if self.shuffled:
            loss, grad = 0.5 * loss, (0.5 * grad)[perm]  # back to the rows D saw
        self.D_chain.backward(d_trace, grad.unsqueeze(1))
        return loss, (loss, s_real, s_fake, self._no_penalty)

    @torch.no_grad()
    def g_grads(self):
        """G's weights are those of the last D phase's G pass, so that pass's rows can be reused."""
        b = self.batch
        if self._next_g is not None:
            g_trace, rows = self._next_g, slice(b, 2 * b)
            self._next_g = None
        else:
            g_trace, rows = self.G_chain.forward(self.latent(b)), None
        fake = g_trace.out if rows is None else g_trace.out[rows]
        if self.moments:
            fake, saved = moments(fake)
        d_trace = self.D_chain.forward(fake)
        loss, grad = score_grad(self.loss, d_trace.out[:, 0])
        grad_fake = self.D_chain.backward(d_trace, grad.unsqueeze(1), weight_grads=False, input_grad=True)
        if self.moments:
            grad_fake = moments_backward(grad_fake[0], saved)
        self.G_chain.backward(g_trace, grad_fake, rows=rows)
        return loss
