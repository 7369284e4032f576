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

Gradients land in the parameters' `.grad`, so the optimisers, checkpoints, EMA and the NaN guard
are the ones the autograd step uses. `tests/test_manual_step.py` compares both steps.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganctl.config import RunConfig
from ganctl.models.linear import _activation_backward, _mm_t, _post_op, Linear, ONEDNN_MIN_MACS

BACKWARDS = ("auto", "autograd", "manual")
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
        (m.d_dropout > 0, f"model.d_dropout={m.d_dropout} (only 0)"),
        (m.d_features != "none", f"model.d_features={m.d_features} (only none)"),
        (lo.name == "wgan_gp", "loss=wgan_gp (its gradient penalty needs autograd's double backward)"),
        (lo.d_batch != "separate", f"loss.d_batch={lo.d_batch} (only separate)"),
        (t.precision != "fp32", f"trainer.precision={t.precision} (only fp32)"),
        (t.compile, "trainer.compile=true"),
        (world is None and t.devices > 1, f"trainer.devices={t.devices} (DDP reduces gradients through autograd)"),
        (world is not None and world > 1, f"{world} processes (DDP reduces gradients through autograd)"),
    ]
    return next((reason for failed, reason in reasons if failed), None)


def use_manual(cfg: RunConfig, device: torch.device, world: int = 1) -> bool:
    """trainer.backward resolved: auto means manual on CPU where the run allows it.

    config.validate has already refused trainer.backward=manual where it is unsupported.
    """
    if cfg.trainer.backward == "manual":
        if world > 1:  # under torchrun, which config.validate cannot see
            from ganctl.errors import ConfigError

            raise ConfigError(f"trainer.backward=manual does not support {unsupported(cfg, world)}; "
                              "accepted: trainer.backward=auto or autograd for this run")
        return True
    # Measured on CPU only (docs/BENCHMARKS.md); on a GPU autograd stays the default.
    return cfg.trainer.backward == "auto" and device.type == "cpu" and unsupported(cfg, world) is None


class Chain:
    """An MLP's Stack as (Linear, activation name, activation args) layers, run by hand."""

    def __init__(self, stack: nn.Sequential):
        mods = [m for m in stack if not isinstance(m, nn.Flatten)]
        self.layers: list[tuple[Linear, str, list]] = []
        i = 0
        while i < len(mods):
            lin = mods[i]
            if not isinstance(lin, nn.Linear):
                raise ValueError(f"manual step: {type(lin).__name__} where a Linear layer was expected")
            post: tuple[str, list] = ("none", [])
            if i + 1 < len(mods) and not isinstance(mods[i + 1], nn.Linear):
                act = mods[i + 1]
                post = ("none", []) if isinstance(act, nn.Identity) else _post_op(act)
                if post is None:
                    raise ValueError(f"manual step: no fused form of {type(act).__name__}")
                i += 1
            self.layers.append((lin, *post))
            i += 1

    @staticmethod
    def _onednn(lin: nn.Module, a: torch.Tensor, cols: int) -> bool:
        """Whether lin's forward would send the product a @ (a.shape[1] x cols) to oneDNN."""
        return (getattr(lin, "onednn", False) and a.shape[0] * a.shape[1] * cols >= ONEDNN_MIN_MACS
                and a.device.type == "cpu" and a.dtype == torch.float32)

    def _mm(self, lin: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a @ b with the kernel lin's forward would pick for a product of this size."""
        if self._onednn(lin, a, b.shape[1]):
            return _mm_t(a, b.t())
        return a @ b

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[input, output of layer 1, ..., output]: what backward needs."""
        acts = [x]
        for lin, post, args in self.layers:
            if self._onednn(lin, x, lin.out_features):
                x = _mm_t(x, lin.weight, lin.bias, post, args)
            else:
                x = _APPLY[post](F.linear(x, lin.weight, lin.bias), args)
            acts.append(x)
        return acts

    def backward(self, acts: list[torch.Tensor], grad: torch.Tensor, rows: slice | None = None,
                 weight_grads: bool = True, input_grad: bool = False) -> torch.Tensor | None:
        """Backpropagate `grad` (of the output's `rows`) from the output to the input.

        weight_grads sets each parameter's .grad; input_grad returns the input's gradient.
        """
        pick = (lambda a: a) if rows is None else (lambda a: a[rows])
        for k in range(len(self.layers) - 1, -1, -1):
            lin, post, args = self.layers[k]
            grad = _activation_backward(grad, pick(acts[k + 1]), post, args)
            if weight_grads:
                lin.weight.grad = self._mm(lin, grad.t(), pick(acts[k]))
                if lin.bias is not None:
                    lin.bias.grad = grad.sum(0)
            if k == 0 and not input_grad:
                return None
            grad = self._mm(lin, grad, lin.weight)
        return grad


class ManualStep:
    """The D and G phases of an MLP GAN step; each leaves its network's gradients in .grad."""

    def __init__(self, G: nn.Module, D: nn.Module, loss, latent: Callable[[int], torch.Tensor], batch: int):
        self.G, self.D = Chain(G.net), Chain(D.net)
        self.loss, self.latent, self.batch = loss, latent, batch
        self.out_shape = G.out_shape
        self._next_g: list[torch.Tensor] | None = None  # G's activations on the G phase's latents

    @torch.no_grad()
    def d_phase(self, real: torch.Tensor, draw_g_latents: bool) -> tuple[torch.Tensor, tuple]:
        """D's gradients on a real batch and a fresh fake batch; with draw_g_latents, G's forward
        pass also covers the next G phase's latents, drawn after D's, as the autograd step does."""
        b = self.batch
        z = self.latent(b)
        if draw_g_latents:
            z = torch.cat([z, self.latent(b)])
        g_acts = self.G.forward(z)
        self._next_g = g_acts if draw_g_latents else None
        x = torch.cat([real.reshape(real.shape[0], -1), g_acts[-1][:b]])
        d_acts = self.D.forward(x)
        scores = d_acts[-1][:, 0]
        s_real, s_fake = scores[: real.shape[0]], scores[real.shape[0] :]
        loss, g_real, g_fake = self.loss.d_grads(s_real, s_fake)
        self.D.backward(d_acts, torch.cat([g_real, g_fake]).unsqueeze(1))
        return loss, (loss, s_real, s_fake, torch.zeros((), device=real.device))

    @torch.no_grad()
    def g_phase(self) -> torch.Tensor:
        """G's gradients through the current D; G's weights are those of the last d_phase."""
        b = self.batch
        if self._next_g is not None:
            g_acts, rows = self._next_g, slice(b, 2 * b)
            self._next_g = None
        else:
            g_acts, rows = self.G.forward(self.latent(b)), None
        fake = g_acts[-1] if rows is None else g_acts[-1][rows]
        d_acts = self.D.forward(fake)
        loss, grad = self.loss.g_grad(d_acts[-1][:, 0])
        grad_fake = self.D.backward(d_acts, grad.unsqueeze(1), weight_grads=False, input_grad=True)
        self.G.backward(g_acts, grad_fake, rows=rows)
        return loss
