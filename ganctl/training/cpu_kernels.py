"""What ganctl reaches through private PyTorch APIs: fused SGD without Optimizer.step, and
Optimizer's methods without importing torch._dynamo.

Each private-API speed-up stays only where it measured at least 1.15x against the public path on
the machine at hand (docs/BENCHMARKS.md). On an Intel Xeon (AVX-512, AMX) oneDNN's Linear
products (0.85x), uniform-draw dropout masks (1.10x) and direct fused Adam (1.06-1.10x) did not,
and were removed: G and D train as the plain nn.Linear/nn.Dropout modules they are, and Adam runs
opt.step. Direct fused SGD inside setup 002's manual step pays (1.27x) and stays (see `stepper`),
and with `without_dynamo` it keeps setup 002's whole process clear of the torch._dynamo import once
the fast-path pick is cached (the first run's timing of the autograd candidate imports it).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import torch

# trainer.cpu_matmul's values. Every value now runs nn.Linear's own product (the BLAS); `onednn`
# stays accepted so that configs and checkpoints that name it still run (fast_paths says so).
CPU_MATMULS = ("auto", "onednn", "blas")
BACKWARDS = ("auto", "autograd", "manual")


def stepper(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """opt.step, or for fused SGD on CPU tensors the same update without Optimizer.step's Python.

    Setup 002's manual step makes 40 SGD updates of 5- and 10-unit layers per iteration, where
    Optimizer.step's hooks and tensor grouping cost more than the kernel: calling the kernel
    directly made that step 1.27x faster on a quiet Intel Xeon (1.28x and 1.11x on a busy one;
    docs/BENCHMARKS.md). The direct call passes the optimiser's own state to the kernel opt.step
    calls (torch.optim.sgd._fused_sgd), so results, state dicts and checkpoints are unchanged. The
    first step creates the momentum buffers as that function does, through the kernel's
    `is_first_step`, so opt.step (which imports torch._dynamo, see `without_dynamo`) is never called.
    """
    plain = type(opt) is torch.optim.SGD and hasattr(torch, "_fused_sgd_")
    plain = plain and all(
        g.get("fused") and not (g.get("maximize") or g.get("differentiable") or g.get("capturable"))
        for g in opt.param_groups
    )
    plain = plain and all(
        p.device.type == "cpu" and p.dtype == torch.float32 for g in opt.param_groups for p in g["params"]
    )
    return _direct_sgd(opt) if plain else opt.step


def _direct_sgd(opt: torch.optim.SGD) -> Callable[[], None]:
    def step() -> None:
        work = []
        for group in opt.param_groups:  # read each time: load_state_dict replaces the list
            params = [p for p in group["params"] if p.grad is not None]
            buffers = [opt.state.get(p, {}).get("momentum_buffer") for p in params]
            work.append((group, params, buffers))
        for group, params, buffers in work:
            if params:
                _fused_sgd(group, params, buffers, opt.state)

    return step


def _fused_sgd(group: dict, params: list, buffers: list, state: dict) -> None:
    """torch.optim.sgd._fused_sgd's call for one group, storing new momentum buffers as SGD.step does."""
    momentum = group["momentum"]
    # As _fused_sgd decides it: the first step is the one where no parameter has a buffer yet; the
    # kernel then fills fresh buffers with the gradients instead of blending them in.
    first = bool(momentum) and all(b is None for b in buffers)
    if first:
        buffers = [torch.empty_like(p.grad) for p in params]
    elif momentum and any(b is None for b in buffers):
        raise RuntimeError("some parameters of an SGD group have momentum buffers and some do not")
    torch._fused_sgd_(
        params,
        [p.grad for p in params],
        buffers if momentum else [],
        weight_decay=group["weight_decay"],
        momentum=momentum,
        lr=group["lr"],
        dampening=group["dampening"],
        nesterov=group["nesterov"],
        maximize=False,
        is_first_step=first,
        grad_scale=None,
        found_inf=None,
    )
    if first:
        for p, b in zip(params, buffers):
            state[p]["momentum_buffer"] = b


# Optimizer's methods that PyTorch wraps in torch._disable_dynamo (torch/_compile.py), which imports
# torch._dynamo on the wrapped method's first call.
_DYNAMO_WRAPPED = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")


@contextlib.contextmanager
def without_dynamo() -> Iterator[None]:
    """Within the block, Optimizer's dynamo-wrapped methods run directly while torch._dynamo is unimported.

    Their wrapper exists to keep torch.compile from tracing them, and it imports torch._dynamo to
    say so: ~1 s of a 2-core CPU's time (docs/BENCHMARKS.md), a sixth of setup 002's whole
    process. With torch._dynamo unimported nothing is being compiled, so there is nothing to keep
    out: the block marks each wrapped function as already disabled (the attribute the wrapper
    caches its disabled twin in, pointing at the function itself) and removes the marks on exit,
    so that anything later compiled sees PyTorch's own wrappers. Where torch._dynamo is already
    imported, or the wrapper has another form, the block changes nothing.
    """
    if "torch._dynamo" in sys.modules:
        yield
        return
    marked = []
    for name in _DYNAMO_WRAPPED:
        fn = getattr(getattr(torch.optim.Optimizer, name, None), "__wrapped__", None)
        if fn is not None and getattr(fn, "__dynamo_disable", None) is None:
            setattr(fn, "__dynamo_disable", fn)
            marked.append(fn)
    try:
        yield
    finally:
        for fn in marked:
            if getattr(fn, "__dynamo_disable", None) is fn:
                delattr(fn, "__dynamo_disable")
