"""Compute bound of one mnist_bce step: its matmul FLOPs, this machine's rate on those exact shapes.

Convention: a multiply-add is 2 FLOPs; only the matrix products of the Linear layers count (bias
adds, activations, losses and the Adam update are elementwise: they cost memory traffic and op
overhead, not FLOPs worth counting). A Linear layer with `i` inputs and `o` outputs on a batch of
B rows costs 2*B*i*o forward, and as much again for each gradient backward computes: the input
gradient dX = dY @ W (skipped by autograd where X needs no gradient: the data and the latents) and
the weight gradient dW = dY^T @ X.

One step of setup 001 (B = 64; G 64-256-256-784, D 784-256-256-1), as ganctl's loop runs it:
  D phase: G forward without grad on a fresh z; one D forward on the real and the fake batch
           stacked (2B rows: D has no batch statistics); backward through D: weight gradients of
           every layer, input gradients of layers 2 and 3.
  G phase: G forward on a fresh z; D forward; backward into G's parameters only: D's input
           gradients (the path to G), no D weight gradients (backward(inputs=G's parameters)
           prunes them); G's weight gradients and input gradients of layers 2 and 3.
  With the manual step (the CPU default), G's forward pass on both phases' latents is one pass
  on 2B rows; the FLOPs are the same.
The tutorial loop does more math for the same step: it runs D twice on B rows (the same FLOPs)
and computes D's weight gradients in the G phase too (`reference_mflop` below).

One result line, `matmul_bound key=value ...`:
  mflop_step        analytic matmul MFLOP per step (10**6)
  reference_mflop   the tutorial loop's matmul MFLOP per step (D's weight gradients in the G phase)
  mflop_counted     the same counted by torch.utils.flop_counter.FlopCounterMode on one real step
                    of ganctl's models and loss (nan if the counter is unavailable)
  matmuls_step      matrix products per step (22 with the manual step's shared G forward pass, else 25)
  manual_step       1 when ganctl's manual step applies to mnist_bce here (a CPU); the bound is its
  mm_ms_step        summed time of those products, each timed alone on its shape with torch.mm's
                    BLAS, the product nn.Linear and the manual step use
  mm_ms_step_blas   the same sum, named by its kernel
  gflops_shapes     mflop_step / mm_ms_step: this machine's rate on these small shapes
  bound_steps_per_s 1000 / mm_ms_step: no step can be faster than its matmuls
  gflops_square     rate of one 1024x1024x1024 product, the best case (and _blas)
  gflops_shapes_1t, bound_steps_per_s_1t   the same with one thread (CPU only)
Each shape is timed in 7 rounds of 200 calls after a warm-up, and the fastest round counts.
"""

from __future__ import annotations

import sys
import time

import common

BATCH = 64
G_LAYERS = [(64, 256), (256, 256), (256, 784)]
D_LAYERS = [(784, 256), (256, 256), (256, 1)]


def step_matmuls(
    batch: int = BATCH, d_weight_grads_in_g_phase: bool = False, shared_g_forward: bool = False
) -> list[tuple[str, int, int, int, int]]:
    """(what, m, k, n, count) of every matrix product in one step; product (m,k) @ (k,n).

    shared_g_forward: one G forward pass on 2B latents serves both phases, as the manual step
    (trainer.backward=manual, the CPU default for setup 001) runs it: the same FLOPs in 3 products
    instead of 6.
    """
    ops = []

    def forward(net, layers, rows):
        for j, (i, o) in enumerate(layers):
            ops.append((f"{net}{j + 1} fwd", rows, i, o, 1))

    def backward(net, layers, rows, first_input_grad, weight_grads=True):
        for j, (i, o) in enumerate(layers):
            if weight_grads:
                ops.append((f"{net}{j + 1} dW", o, rows, i, 1))  # dY^T @ X
            if j > 0 or first_input_grad:
                ops.append((f"{net}{j + 1} dX", rows, o, i, 1))  # dY @ W

    # D phase
    forward("G", G_LAYERS, 2 * batch if shared_g_forward else batch)  # fake = G(z) under no_grad
    forward("D", D_LAYERS, 2 * batch)  # D(cat(real, fake))
    backward("D", D_LAYERS, 2 * batch, first_input_grad=False)  # neither input needs a gradient
    # G phase
    if not shared_g_forward:
        forward("G", G_LAYERS, batch)
    forward("D", D_LAYERS, batch)
    backward("D", D_LAYERS, batch, first_input_grad=True, weight_grads=d_weight_grads_in_g_phase)
    backward("G", G_LAYERS, batch, first_input_grad=False)  # z needs no gradient
    return ops


def merged(ops):
    """Same (m, k, n) and layout merged, counts added."""
    out: dict[tuple, int] = {}
    for what, m, k, n, count in ops:
        key = (what.split()[-1], m, k, n)
        out[key] = out.get(key, 0) + count
    return out


def operands(kind: str, m: int, k: int, n: int, device: str):
    """Operands with the memory layout autograd uses for that product of a Linear layer."""
    import torch

    if kind == "fwd":  # X @ W^T, W stored (n, k)
        return torch.randn(m, k, device=device), torch.randn(n, k, device=device).t()
    if kind == "dX":  # dY @ W, W stored (k, n) = (out, in)
        return torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    return torch.randn(k, m, device=device).t(), torch.randn(k, n, device=device)  # dY^T @ X


def kernels(device: str) -> list[str]:
    """The matmul kernels to try: the BLAS behind torch.mm, which nn.Linear and the manual step use
    (ganctl's oneDNN layers were removed: slower than the BLAS on an Intel Xeon, docs/BENCHMARKS.md)."""
    return ["blas"]


def time_mm(a, b, calls: int, rounds: int, device: str, kernel: str = "blas") -> float:
    """Fastest over `rounds` of the mean seconds per product a @ b in a loop of `calls`.

    The fastest, not the median: other jobs only ever slow a round down, and a bound should be
    what the machine can do, so noise makes it too high rather than too low.
    """
    import torch

    def product():
        return torch.mm(a, b)

    for _ in range(max(3, calls // 10)):
        product()
    per_call = []
    for _ in range(rounds):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            product()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_call.append((time.perf_counter() - start) / calls)
    return min(per_call)


def manual_step(device: str) -> bool:
    """Whether ganctl's mnist_bce can run the manual step here (a CPU): the bound is that of the
    fastest step ganctl has. (trainer.backward=auto times it against autograd at start-up.)"""
    from ganctl.cli import compose_run_config
    from ganctl.training.manual_step import unsupported

    return device == "cpu" and unsupported(compose_run_config(["+experiment=mnist_bce"])) is None


def step_time(ops, device: str, calls: int, rounds: int) -> dict[str, float]:
    """Seconds of one step's products `ops`, each shape timed alone and weighted by its count: per
    kernel, and "best", the faster kernel for each shape (what a loop that picks per shape could reach)."""
    totals = {name: 0.0 for name in [*kernels(device), "best"]}
    for (kind, m, k, n), count in merged(ops).items():
        a, b = operands(kind, m, k, n, device)
        times = {name: time_mm(a, b, calls, rounds, device, name) for name in kernels(device)}
        for name, seconds in times.items():
            totals[name] += count * seconds
        totals["best"] += count * min(times.values())
    return totals


def counted_flops(device: str) -> float:
    """FLOPs of one real ganctl mnist_bce step (its models and loss), counted by PyTorch."""
    import torch

    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return float("nan")
    from ganctl.cli import compose_run_config
    from ganctl.generation import latents
    from ganctl.losses import LOSSES
    from ganctl.models import build_models

    cfg = compose_run_config(["+experiment=mnist_bce"])
    # Plain models (the BLAS path): the counter knows aten.mm/addmm, not oneDNN's op; the FLOPs are the same.
    G, D = build_models(cfg.model, (1, 28, 28))
    G.to(device)
    D.to(device)
    loss = LOSSES[cfg.loss.name]
    real = torch.rand(BATCH, 1, 28, 28, device=device) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            fake = G(latents(BATCH, cfg.model, device=device))
        s_real, s_fake = D(torch.cat([real, fake])).split([BATCH, BATCH])
        loss.d(s_real, s_fake).backward()
        g_loss = loss.g(D(G(latents(BATCH, cfg.model, device=device))))
        g_loss.backward(inputs=list(G.parameters()))
    return float(counter.get_total_flops())


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    import torch

    calls, rounds = (5, 2) if args.smoke else (200, 7)
    manual = manual_step(device)
    ops = step_matmuls(shared_g_forward=manual)
    flops = sum(2 * m * k * n * count for _, m, k, n, count in ops)
    reference = sum(2 * m * k * n * count for _, m, k, n, count in step_matmuls(d_weight_grads_in_g_phase=True))
    times = step_time(ops, device, calls, rounds)
    seconds = times["best"]
    threads = torch.get_num_threads()
    seconds_1t = float("nan")
    if device == "cpu":
        torch.set_num_threads(1)
        seconds_1t = seconds if threads == 1 else step_time(ops, device, calls, rounds)["best"]
        torch.set_num_threads(threads)
    size = 256 if args.smoke else 1024
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    square = {name: time_mm(a, b, 2 if args.smoke else 10, 3, device, name) for name in kernels(device)}
    counted = counted_flops(device)
    if counted == counted and counted != flops:
        common.note(f"FlopCounterMode counted {counted:.0f} FLOPs, the analytic count is {flops}")
    common.note(
        f"{sum(c for *_, c in ops)} products per step; "
        f"{len(merged(ops))} distinct shapes timed with {', '.join(kernels(device))}"
    )
    values = {
        "mflop_step": flops / 1e6,
        "reference_mflop": reference / 1e6,
        "mflop_counted": counted / 1e6,
        "matmuls_step": sum(c for *_, c in ops),
        "manual_step": int(manual),
        "mm_ms_step": seconds * 1e3,
        "gflops_shapes": flops / seconds / 1e9,
        "bound_steps_per_s": 1 / seconds,
        "gflops_square": 2 * size**3 / min(square.values()) / 1e9,
        "gflops_shapes_1t": flops / seconds_1t / 1e9,
        "bound_steps_per_s_1t": 1 / seconds_1t,
    }
    for name in kernels(device):
        values[f"mm_ms_step_{name}"] = times[name] * 1e3
        values[f"gflops_square_{name}"] = 2 * size**3 / square[name] / 1e9
    common.emit("matmul_bound", device, values)


if __name__ == "__main__":
    sys.exit(main())
