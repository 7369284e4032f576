"""The one CPU kernel ganctl calls through a private PyTorch API: fused SGD without Optimizer.step.

Each private-API speed-up stays only where it measured at least 1.15x against the public path on
the machine at hand (docs/BENCHMARKS.md). On an Intel Xeon (AVX-512, AMX) oneDNN's Linear
products (0.85x), uniform-draw dropout masks (1.10x) and direct fused Adam (1.06-1.10x) did not,
and were removed: G and D train as the plain nn.Linear/nn.Dropout modules they are, and Adam runs
opt.step. Direct fused SGD inside setup 002's manual step pays (1.27x) and stays (see `stepper`).
"""

from __future__ import annotations

from typing import Callable

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
    calls (torch.optim.sgd._fused_sgd), so results, state dicts and checkpoints are unchanged; a
    step that finds no state yet goes through opt.step.
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
            momentum = group["momentum"]
            if momentum and not all(opt.state.get(p, {}).get("momentum_buffer") is not None for p in params):
                opt.step()  # the first step: let the optimiser create its momentum buffers
                return
            work.append((group, params))
        for group, params in work:
            if params:
                _fused_sgd(group, params, opt.state)

    return step


def _fused_sgd(group: dict, params: list, state: dict) -> None:
    momentum = group["momentum"]
    torch._fused_sgd_(
        params,
        [p.grad for p in params],
        [] if momentum == 0 else [state[p]["momentum_buffer"] for p in params],
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
