"""trainer.backward=manual: the MLP GAN step with hand-written gradients instead of autograd.

At setup 001's sizes one step is about twenty matrix products of a few hundred microseconds each,
and autograd adds its own work around them: graph nodes, saved tensors, and a second G forward
pass for the G phase. A fully
connected G and D with plain activations have gradients simple enough to write out, so this
module computes them directly:

- One G forward pass on 2B latents serves both phases: D's update uses the first B samples
  (detached), G's update backpropagates through the other B. G's weights do not change during
  D's update, so this is the same function as two passes; the latents are drawn in the same order
  as the autograd step draws them, so both produce the same numbers up to float rounding.
- Each layer's backward through its activation uses the layer's output, as autograd's kernels
  for these activations do.
- D's backward in the G phase computes input gradients only, and G's backward uses only the rows
  the G phase scored.
- Dropout (setup 004's D) draws nn.Dropout's mask from the same random numbers and keeps it
  scaled for backward; setup 004's shuffled batch is scored in its shuffled order and its
  gradient put back in that order. Both draw random numbers
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
from ganctl.losses import LOSSES, Loss, bce_d, bce_g, minimax_g
from ganctl.models.mlp import BatchMoments
from ganctl.training.cpu_kernels import stepper
from ganctl.training.step import DStats, GANStep

FUSABLE = ("relu", "leaky_relu", "tanh", "sigmoid")

_APPLY: dict[str, Callable[[torch.Tensor, list], torch.Tensor]] = {
    "none": lambda y, args: y,
    "relu": lambda y, args: y.relu_(),
    "leaky_relu": lambda y, args: F.leaky_relu_(y, args[0]),
    "tanh": lambda y, args: y.tanh_(),
    "sigmoid": lambda y, args: y.sigmoid_(),
}


def _post_op(act: nn.Module) -> tuple[str, list] | None:
    """The name and arguments of an activation the manual step can differentiate, or None."""
    if isinstance(act, nn.Tanh):
        return "tanh", []
    if isinstance(act, nn.ReLU):
        return "relu", []
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [act.negative_slope]
    if isinstance(act, nn.Sigmoid):
        return "sigmoid", []
    return None


def _activation_backward(grad: torch.Tensor, y: torch.Tensor, post: str, args: list) -> torch.Tensor:
    """Gradient before the activation from its output y (the kernels autograd uses for these ops)."""
    if post == "tanh":
        return torch.ops.aten.tanh_backward(grad, y)
    if post == "relu":
        return torch.ops.aten.threshold_backward(grad, y, 0)
    if post == "leaky_relu":
        return torch.ops.aten.leaky_relu_backward(grad, y, args[0], True)
    if post == "sigmoid":
        return torch.ops.aten.sigmoid_backward(grad, y)
    return grad


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """nn.Dropout's mask for x on a CPU, scaled by 1/(1 - p): the same draws from the same stream
    (bernoulli_(1 - p) on a tensor like x, then the division), so both steps drop the same units."""
    keep = 1.0 - p
    return torch.empty_like(x).bernoulli_(keep).div_(keep)


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
        (
            LOSSES[lo.name].penalty is not None,
            f"loss={lo.name} (its gradient penalty needs autograd's double backward)",
        ),
        (lo.r1_gamma > 0, "loss.r1_gamma > 0 (R1 needs autograd's double backward)"),
        (m.d_spectral_norm, "model.d_spectral_norm=true"),
        (m.conditional, "model.conditional=true"),
        (bool(t.augment), f"trainer.augment={list(t.augment)} (only [])"),
        (t.batch_gpu is not None, f"trainer.batch_gpu={t.batch_gpu} (chunks accumulate through autograd; only null)"),
        (t.precision not in ("fp32", "auto"), f"trainer.precision={t.precision} (only fp32)"),
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


class Layer:
    """One Linear of a Chain with its activation and dropout.

    At setup 002's sizes an op costs more in dispatch than in arithmetic (40 updates of 5- and
    10-unit layers per step), and so does Python: the layer keeps its parameters' transposed view
    (made once; a view shares the parameter's storage, so in-place updates by the optimisers and
    load_state_dict keep it current, and a parameter replaced outright is noticed).
    """

    __slots__ = ("lin", "post", "args", "drop", "_params", "_w", "_wt")

    def __init__(self, lin: nn.Linear, post: str, args: list, drop: nn.Dropout | None):
        self.lin, self.post, self.args, self.drop = lin, post, args, drop
        self._params = lin._parameters  # a plain dict: faster than Module.__getattr__
        self._w: torch.Tensor | None = None
        self._wt: torch.Tensor | None = None

    def weight(self) -> torch.Tensor:
        return self._params["weight"]

    def bias(self) -> torch.Tensor | None:
        return self._params["bias"]

    def wt(self) -> torch.Tensor:
        w = self._params["weight"]
        if w is not self._w:
            self._w, self._wt = w, w.t()
        return self._wt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self._params["bias"]
        y = torch.mm(x, self.wt()) if bias is None else torch.addmm(bias, x, self.wt())
        return _APPLY[self.post](y, self.args)


class Chain:
    """An MLP's nn.Sequential as Layers: (Linear, activation name, activation args, Dropout or None)."""

    def __init__(self, stack: nn.Sequential):
        mods = [m for m in stack if not isinstance(m, nn.Flatten)]
        self.layers: list[Layer] = []
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
                if drop.inplace or drop.p >= 1:
                    raise ValueError(f"manual step: {drop!r} is not a Dropout with 0 <= p < 1")
                i += 1
            self.layers.append(Layer(lin, *post, drop))
            i += 1
        # Dropout draws random numbers inside the forward pass.
        self.random = any(layer.drop is not None and layer.drop.p > 0 for layer in self.layers)

    def forward(self, x: torch.Tensor) -> Trace:
        trace = Trace()
        for layer in self.layers:
            trace.inputs.append(x)
            x = layer.forward(x)
            trace.outputs.append(x)
            mask = None
            drop = layer.drop
            if drop is not None and drop.training and drop.p > 0:
                # nn.Dropout's mask on a CPU, from the same random numbers.
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
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            mask, y, x = trace.masks[k], trace.outputs[k], trace.inputs[k]
            if rows is not None:
                mask, y, x = (None if mask is None else mask[rows]), y[rows], x[rows]
            if mask is not None:
                grad = grad * mask
            grad = _activation_backward(grad, y, layer.post, layer.args)
            if weight_grads:
                weight, bias = layer.weight(), layer.bias()
                weight.grad = torch.mm(grad.t(), x)
                if bias is not None:
                    bias.grad = grad.sum(0)
            if k == 0 and not input_grad:
                return None
            grad = torch.mm(grad, layer.weight())
        return grad


# Closed forms of the score gradients of the BCE-type losses (d softplus(x)/dx = sigmoid(x)); other
# losses take them from autograd on the scores alone. Scores are D's output column (N, 1), real
# rows first, so the gradient goes back into D as it is. Keyed by the loss function itself: a
# closed form is the derivative of that function, whichever registry entry uses it.
CLOSED_FORM_D = (bce_d,)  # softplus(-real).mean() + softplus(fake).mean()
CLOSED_FORM_G = {
    bce_g: lambda loss, s: (loss.g(s), torch.sigmoid(s).sub_(1).div_(s.numel())),
    minimax_g: lambda loss, s: (loss.g(s), torch.sigmoid(s).neg_().div_(s.numel())),
}


class ScoreGrads:
    """D's loss and its gradient with respect to the score column, real rows first.

    BCE's loss is sum_i w_i softplus(sign_i s_i) and its gradient w_i (sigmoid(s_i) - target_i),
    with sign -1 and target 1 on the real rows, +1 and 0 on the fake ones, and w_i one over the
    size of the row's half: six ops on the whole column, with the constants made once per shape.
    """

    def __init__(self, loss: Loss):
        self.loss = loss
        self._consts: dict = {}

    def _bce(self, n_real: int, n_fake: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (n_real, n_fake, like.device, like.dtype)
        if key not in self._consts:
            real = torch.arange(n_real + n_fake, device=like.device).unsqueeze(1) < n_real
            one = torch.ones((), dtype=like.dtype, device=like.device)
            self._consts[key] = (
                torch.where(real, -one, one),
                real.to(like.dtype),
                torch.where(real, one / n_real, one / n_fake),
            )
        return self._consts[key]

    def __call__(self, s: torch.Tensor, n_real: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.loss.d in CLOSED_FORM_D:
            sign, target, weight = self._bce(n_real, s.shape[0] - n_real, s)
            return (F.softplus(s * sign) * weight).sum(), (torch.sigmoid(s) - target) * weight
        with torch.enable_grad():
            col = s.detach().requires_grad_()
            value = self.loss.d(col[:n_real, 0], col[n_real:, 0])
            (grad,) = torch.autograd.grad(value, col)
        return value.detach(), grad


def score_grad(loss: Loss, s_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """G's loss (detached) and its gradient with respect to the fake score column."""
    if loss.g in CLOSED_FORM_G:
        return CLOSED_FORM_G[loss.g](loss, s_fake)
    with torch.enable_grad():
        f = s_fake.detach().requires_grad_()
        value = loss.g(f[:, 0])
        (grad,) = torch.autograd.grad(value, f)
    return value.detach(), grad


def moment_rows(x: torch.Tensor) -> torch.Tensor:
    """Setup 002's D input for each column of x (n, k): k rows of (mean, std, skewness, excess
    kurtosis), as models.mlp.BatchMoments computes one. The D phase scores the real and the fake
    batch as two columns of one tensor: half the ops of two passes."""
    std, mean = torch.std_mean(x, dim=0, correction=0, keepdim=True)
    z = (x - mean) / std
    z2 = z * z
    return torch.cat([mean, std, (z2 * z).mean(0, keepdim=True), (z2 * z2).mean(0, keepdim=True) - 3.0]).t()


class Moments:
    """One batch's moments row with what its backward needs, for the G phase.

    With z = (x - mean) / std over n values (population std), d mean/dx_i = 1/n, d std/dx_i = z_i/n,
    d mean(z^3)/dx_i = 3 (z_i^2 - 1 - k3 z_i) / (n std), d mean(z^4)/dx_i = 4 (z_i^3 - k3 - k4 z_i) / (n std),
    where k3, k4 are mean(z^3), mean(z^4). So the batch's gradient is a cubic in z_i whose four
    coefficients are linear in the products g_j w_k of the row's gradient g and
    w = (1, 1/std, k3/std, k4/std): c = T (g outer w), with T a constant 4 x 16 matrix, and the
    gradient is the matrix of powers (1, z, z^2, z^3) times c. A handful of ops instead of twenty
    on scalars, which is what this step's time is made of.
    """

    def __init__(self):
        self._consts: dict = {}

    def _for(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (n, like.device, like.dtype)
        if key not in self._consts:
            kw = dict(dtype=like.dtype, device=like.device)
            T = torch.zeros(4, 16, **kw)
            # c0 = g0 - 3 g2 / std - 4 g3 k3 / std; c1 = g1 - 3 g2 k3 / std - 4 g3 k4 / std;
            # c2 = 3 g2 / std; c3 = 4 g3 / std; all over n. Column j * 4 + k holds g_j w_k.
            for row, j, k, coef in ((0, 0, 0, 1), (0, 2, 1, -3), (0, 3, 2, -4), (1, 1, 0, 1), (1, 2, 2, -3),
                                    (1, 3, 3, -4), (2, 2, 1, 3), (3, 3, 1, 4)):  # fmt: skip
                T[row, j * 4 + k] = coef / n
            self._consts[key] = (
                torch.ones(n, **kw),
                T,
                torch.tensor([0.0, 0.0, 1.0, 1.0], **kw),  # keeps k3, k4 of the power means
                torch.tensor([1.0, 0.0, 0.0, 0.0], **kw),
                torch.zeros((), **kw),
                torch.full((), -3.0, **kw),
            )
        return self._consts[key]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        v = x.reshape(-1)
        n = v.numel()
        ones, T, keep, e0, zero, minus3 = self._for(n, v)
        std, mean = torch.std_mean(v, correction=0)
        z = (v - mean) / std
        z2 = z * z
        powers = torch.stack([ones, z, z2, z2 * z])
        means = torch.mv(powers, z).div_(n)  # mean z, mean z^2, k3, k4
        row = torch.addcmul(torch.stack([mean, std, zero, minus3]), means, keep)
        return row.unsqueeze(0), (powers, means, std, T, e0)

    @staticmethod
    def backward(grad: torch.Tensor, saved: tuple) -> torch.Tensor:
        """The batch's gradient (n, 1) from the gradient (4,) of its moments row."""
        powers, means, std, T, e0 = saved
        # means[0] = mean(z) is 0 up to rounding, means[1] = mean(z^2) is 1: w = (1, 1/std, k3/std, k4/std).
        w = torch.addcdiv(e0, means, std)
        c = torch.mv(T, torch.outer(grad, w).view(-1))
        return torch.mv(powers.t(), c).unsqueeze(1)


class ManualStep(GANStep):
    """The D and G phases of an MLP GAN; each leaves its network's gradients in .grad."""

    name = "manual"

    def __init__(self, *args, shuffled: bool, **kwargs):
        super().__init__(*args, **kwargs)
        # Setup 002's D scores the whole batch's moments: one row per batch, then an MLP.
        self.moments = isinstance(self.D.net[0], BatchMoments)
        self.G_chain, self.D_chain = Chain(self.G.net), Chain(self.D.net[1:] if self.moments else self.D.net)
        self.shuffled = shuffled
        self.score_grads, self.batch_moments = ScoreGrads(self.loss), Moments()
        # One G pass for both phases draws the G phase's latents early. Where the D phase draws
        # random numbers of its own (dropout, the shuffle), that would change the order of the
        # random stream against the autograd step, so G runs twice there.
        self.shared_g = not (self.D_chain.random or self.shuffled)
        self._next_g: Trace | None = None  # G's pass on the G phase's latents
        self._no_penalty = torch.zeros((), device=self.device)  # the log row's grad norm
        # The manual step is fp32 only (no gradient scaler): its updates may skip Optimizer.step.
        self._step_d, self._step_g = stepper(self.opt_d), stepper(self.opt_g)

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
            x, n_real = moment_rows(torch.cat([real.reshape(-1, 1), g_trace.out[:b]], 1)), 1
        else:
            x = torch.cat([real.reshape(n_real, -1), g_trace.out[:b]])
        if self.shuffled:
            # Setup 004's one shuffled batch and one mean BCE over it (see AutogradStep.scores).
            perm = torch.randperm(x.shape[0], device=x.device)
            d_trace = self.D_chain.forward(x[perm])
            scores = d_trace.out[torch.argsort(perm)]
        else:
            d_trace = self.D_chain.forward(x)
            scores = d_trace.out
        loss, grad = self.score_grads(scores, n_real)
        if self.shuffled:
            loss, grad = 0.5 * loss, (0.5 * grad)[perm]  # back to the rows D saw
        self.D_chain.backward(d_trace, grad)
        flat = scores.view(-1)
        return loss, DStats(loss, flat[:n_real], flat[n_real:], self._no_penalty)

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
            fake, saved = self.batch_moments.forward(fake)
        d_trace = self.D_chain.forward(fake)
        loss, grad = score_grad(self.loss, d_trace.out)
        grad_fake = self.D_chain.backward(d_trace, grad, weight_grads=False, input_grad=True)
        if self.moments:
            grad_fake = self.batch_moments.backward(grad_fake[0], saved)
        self.G_chain.backward(g_trace, grad_fake, rows=rows)
        return loss
