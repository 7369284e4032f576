"""A Linear layer whose fp32 CPU matrix products go through oneDNN instead of the BLAS.

PyTorch's CPU builds send fp32 `nn.Linear` to the BLAS they were built with (MKL in the official
wheels). On AMD CPUs MKL takes its AVX2 code path even where the CPU has AVX-512; oneDNN, which
ships inside the same wheel, uses AVX-512 there. Measured on the development machine (AMD EPYC,
torch 2.14.1, docs/BENCHMARKS.md), setup 001's shapes ran 1.5-2.2x faster through oneDNN, with
results equal to MKL's up to fp32 rounding. `Linear` is a drop-in `nn.Linear` (same parameters,
same state dict); `set_cpu_matmul` picks the kernel per model, and `trainer.cpu_matmul` exposes it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CPU_MATMULS = ("auto", "onednn", "blas")
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


def _mm_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None,
          post: str = "none", args: list | None = None) -> torch.Tensor:
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

    onednn = False  # set_cpu_matmul turns it on

    def fast(self, x: torch.Tensor) -> bool:
        return (self.onednn and x.dim() == 2 and x.shape[0] * self.in_features * self.out_features >= ONEDNN_MIN_MACS
                and x.device.type == "cpu" and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu"))

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


def resolve(choice: str) -> bool:
    """Whether `choice` (auto, onednn, blas) means oneDNN; auto means oneDNN where it exists."""
    if choice not in CPU_MATMULS:
        raise ValueError(f"cpu_matmul {choice!r}; accepted: {', '.join(CPU_MATMULS)}")
    return choice != "blas" and onednn_available()


def set_cpu_matmul(module: nn.Module, choice: str = "auto") -> nn.Module:
    use = resolve(choice)
    for m in module.modules():
        if isinstance(m, Linear):
            m.onednn = use
    return module
