"""CPU kernels behind the training step: oneDNN matrix products, cheaper dropout masks, direct fused Adam.

The models are plain PyTorch modules; `accelerate` re-classes their layers in place on a CPU run
(same parameters, same state dict), so nothing outside ganctl/training meets these kernels.

- PyTorch's CPU builds send fp32 `nn.Linear` to the BLAS they were built with (MKL in the
  official wheels). oneDNN, inside the same wheel, was 1.5-2.2x faster on setup 001's shapes on
  an AMD EPYC and slower on an Intel Xeon (docs/BENCHMARKS.md): `trainer.cpu_matmul=auto` times
  both on the run's shapes (ganctl.training.fast_paths) instead of assuming a vendor.
- A Linear's following activation runs inside oneDNN's product (the fused epilogue).
- Dropout masks are drawn as uniform < keep: bernoulli_ draws element by element on CPU.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

CPU_MATMULS = ("auto", "onednn", "blas")
BACKWARDS = ("auto", "autograd", "manual")
# oneDNN has ~12 us of fixed cost per call here, MKL ~2 us: below about 2M multiply-adds (64 rows
# of a 64->256 layer, 500 rows of 50->50) MKL was as fast or faster, above it oneDNN won.
ONEDNN_MIN_MACS = 1 << 21


def onednn_available() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return False
    return True


def _mm_t(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, post: str = "none", args: list | None = None
) -> torch.Tensor:
    """post(a @ b.T + bias) by oneDNN; a and b may be transposed views."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, post, args or [], "")


def _post_op(act: nn.Module) -> tuple[str, list] | None:
    """oneDNN's name and arguments for an activation it can apply in the matmul's epilogue."""
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


class _OneDNNLinear(torch.autograd.Function):
    """act(x @ W.T + b) in one oneDNN call; act is "none" or one of _post_op's."""

    @staticmethod
    def forward(ctx, x, weight, bias, post, args):
        y = _mm_t(x, weight, bias, post, args)
        ctx.save_for_backward(x, weight, y)
        ctx.post, ctx.args, ctx.has_bias = post, args, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        grad = _activation_backward(grad, y, ctx.post, ctx.args)
        if torch.is_grad_enabled():
            # create_graph=True (gradient penalties): ordinary ops, so the result is differentiable.
            gx = grad @ weight if need_x else None
            gw = grad.t() @ x if need_w else None
        else:
            gx = _mm_t(grad, weight.t()) if need_x else None
            gw = _mm_t(grad.t(), x.t()) if need_w else None
        if need_b and ctx.has_bias:
            gb = grad.sum(0)
        return gx, gw, gb, None, None


class Linear(nn.Linear):
    """nn.Linear with oneDNN matrix products for 2-D fp32 CPU inputs outside autocast."""

    onednn = True

    def fast(self, x: torch.Tensor) -> bool:
        return (
            x.dim() == 2
            and x.shape[0] * self.in_features * self.out_features >= ONEDNN_MIN_MACS
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast(x):
            return self.fused(x, "none", [])
        return F.linear(x, self.weight, self.bias)

    def fused(self, x: torch.Tensor, post: str, args: list) -> torch.Tensor:
        """post(self(x)) in one oneDNN call; only where self.fast(x)."""
        return _OneDNNLinear.apply(x, self.weight, self.bias, post, args)


class Stack(nn.Sequential):
    """nn.Sequential that hands a Linear's following activation to oneDNN's epilogue.

    Fusing saves a pass over the output: measured here, tanh on G's 64 x 784 output cost 106 us on
    its own and 14 us inside the matmul. The module tree and state dict are nn.Sequential's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not any(getattr(m, "onednn", False) for m in self._modules.values()):
            return super().forward(x)
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            m = mods[i]
            if isinstance(m, Linear) and i + 1 < len(mods) and m.fast(x):
                post = _post_op(mods[i + 1])
                if post is not None:
                    x = m.fused(x, *post)
                    i += 2
                    continue
            x = m(x)
            i += 1
        return x


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout's mask for x, already scaled by 1/(1 - p): keep where a uniform draw < 1 - p.

    The draws are fp32 whatever x's dtype: bf16 uniforms are too coarse (p = 0.9 would keep
    10.2% instead of 10%). The manual training step draws its masks here too, so both steps use
    the same random numbers.
    """
    keep = 1.0 - p
    mask = torch.rand_like(x, dtype=torch.float32).lt_(keep).div_(keep)
    return mask if x.dtype == torch.float32 else mask.to(x.dtype)


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask is drawn as uniform < keep instead of by bernoulli_.

    The mask has the same distribution; on CPU, bernoulli_ draws element by element and was the
    largest single op of setup 004's step: 483 us for a 64 x 1024 mask against 146 us this way
    (2 threads, docs/BENCHMARKS.md). Other devices use nn.Dropout's own kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        return x * dropout_mask(x, self.p)


def accelerate(module: nn.Module, onednn: bool) -> nn.Module:
    """Re-class `module`'s layers for CPU training in place: Dropout always, Linear and their
    Sequential containers onto oneDNN when `onednn`. Parameters and state dict are unchanged."""
    use = onednn and onednn_available()
    for m in module.modules():
        if type(m) is nn.Dropout:
            m.__class__ = Dropout
        elif use and type(m) is nn.Linear:
            m.__class__ = Linear
        elif use and type(m) is nn.Sequential:
            m.__class__ = Stack
    return module


def _plain_fused(opt: torch.optim.Optimizer) -> bool:
    """Fused fp32 CPU tensors and none of the options the direct calls below leave out."""
    return all(
        g.get("fused") and not g.get("maximize") and not g.get("differentiable") and not g.get("capturable", False)
        for g in opt.param_groups
    ) and all(p.device.type == "cpu" and p.dtype == torch.float32 for g in opt.param_groups for p in g["params"])


def stepper(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """opt.step, or where it is fused Adam or SGD on CPU, the same update without Optimizer.step's Python.

    For setup 001 that Python (hooks, grouping tensors by device, per-step .to() calls) cost about
    as much as the fused kernel itself, ~0.1 ms per optimiser per step on the development machine;
    setup 002 makes 40 tiny SGD updates per step. The direct call passes the optimiser's own state
    tensors to the same kernel the same way (torch.optim.adam._fused_adam, sgd._fused_sgd), so
    results, state dicts and checkpoints are unchanged; a first step goes through opt.step, which
    creates the state.
    """
    if (
        type(opt) is torch.optim.Adam
        and _plain_fused(opt)
        and hasattr(torch, "_fused_adam_")
        and not any(g["amsgrad"] or g.get("decoupled_weight_decay", False) for g in opt.param_groups)
    ):
        return _direct(opt, _adam_group)
    if type(opt) is torch.optim.SGD and _plain_fused(opt) and hasattr(torch, "_fused_sgd_"):
        return _direct(opt, _sgd_group)
    return opt.step


def _direct(opt: torch.optim.Optimizer, update: Callable) -> Callable[[], None]:
    def step() -> None:
        work = []
        for group in opt.param_groups:  # read each time: load_state_dict replaces the list
            params = [p for p in group["params"] if p.grad is not None]
            if params and not update(group, params, opt.state, dry=True):
                opt.step()  # the first step: let the optimiser create its state
                return
            work.append((group, params))
        for group, params in work:
            if params:
                update(group, params, opt.state, dry=False)

    return step


_ONE = torch.ones(())


def _adam_group(group: dict, params: list, state: dict, dry: bool) -> bool:
    states = [state.get(p) for p in params]
    if dry:
        return all(states)
    steps = [s["step"] for s in states]
    # A list of tensor ones: with the scalar 1, CPU foreach converts it once per tensor (3x slower).
    torch._foreach_add_(steps, [_ONE] * len(steps))
    beta1, beta2 = group["betas"]
    torch._fused_adam_(
        params,
        [p.grad for p in params],
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        steps,
        amsgrad=False,
        lr=group["lr"],
        beta1=beta1,
        beta2=beta2,
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )
    return True


def _sgd_group(group: dict, params: list, state: dict, dry: bool) -> bool:
    momentum = group["momentum"]
    if dry:  # SGD keeps a momentum buffer per parameter only when momentum is on
        return momentum == 0 or all(state.get(p, {}).get("momentum_buffer") is not None for p in params)
    buffers = [] if momentum == 0 else [state[p]["momentum_buffer"] for p in params]
    torch._fused_sgd_(
        params,
        [p.grad for p in params],
        buffers,
        weight_decay=group["weight_decay"],
        momentum=momentum,
        lr=group["lr"],
        dampening=group["dampening"],
        nesterov=group["nesterov"],
        maximize=False,
        is_first_step=False,
        grad_scale=None,
        found_inf=None,
    )
    return True
