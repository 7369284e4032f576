"""Compute bound of one mnist_best step: its convolutions and matrix products, each timed alone.

The products are read off one real step, not written down: the script builds the run as `ganctl
train +experiment=mnist_best` does (training.build: the same models, fast-path pick, memory format
and precision), and records every convolution (transposed ones included), convolution backward and
matrix product (mm, addmm, bmm, mv: the Linear layers and spectral norm's power iteration) that
PyTorch's dispatcher runs during one D update, one D update with the lazy R1 penalty (its double
backward included) and one G update. Each distinct call (op, shapes, strides, dtype, arguments) is
then replayed alone on fresh tensors of the same layout and timed; the fastest of its rounds counts,
since other jobs only ever slow a round down.

  bound per step = D update + G update + (D update with R1 - D update) / loss.r1_every

One result line, `conv_bound key=value ...`:
  conv_ms_step      convolutions, transposed convolutions and their backward (both gradients, and
                    R1's double backward) per step, ms
  mm_ms_step        the matrix products per step, ms
  bound_ms_step     their sum: no step can be faster; bound_steps_per_s = 1000 / bound_ms_step
  gflop_step        the step's FLOPs as torch.utils.flop_counter counts them; gflops_bound their rate
  calls_step        products per step (R1's amortised); shapes: distinct calls timed
  r1_ms             R1's extra products once (every r1_every D updates)
  ganctl_steps_per_s   ganctl's own loop on the same config (train_speed.ganctl_rate: metrics.csv
                    after a warm-up interval), median, _min, _max; ganctl_ms_step = 1000 / median
  fraction          bound_ms_step / ganctl_ms_step: the share of ganctl's step the products need
  channels_last, precision   the fast path the run took (1/0; fp32 or bf16)
  cpu, torch        where it was measured

`--set KEY=VALUE` (repeatable, this script only) adds overrides, e.g. `--set model.conditional=true`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import common

PRODUCTS = {"convolution", "convolution_backward", "mm", "addmm", "bmm", "baddbmm", "mv", "addmv"}
CONVS = {"convolution", "convolution_backward"}


def built_run(overrides: list[str]):
    """The run `ganctl train OVERRIDES` builds (training.build), before its first step."""
    from ganctl.cli import compose_run_config
    from ganctl.training.build import build
    from ganctl.training.distributed import Rank

    cfg = compose_run_config(overrides)
    return cfg, build(cfg, Rank())


def lazy_every(gan) -> int:
    """How often the lazy penalty (R1) runs: every N-th D update (1 when there is none)."""
    return max([p.every for p in gan.loss.penalties] + [1])


class Layout(NamedTuple):
    """A tensor argument as recorded: what a fresh tensor for the replay needs (a pytree leaf)."""

    shape: tuple
    stride: tuple
    dtype: object
    device: str

    def __repr__(self) -> str:
        return f"Layout({self.shape}, {self.stride}, {self.dtype}, {self.device})"


def recorder():
    """A dispatch mode that keeps (op, layout of every argument) of each product it sees."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map

    def meta(x):
        if isinstance(x, torch.Tensor):
            return Layout(tuple(x.shape), tuple(x.stride()), x.dtype, str(x.device))
        return x

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls: Counter = Counter()
            self.ops: dict = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func.overloadpacket.__name__ in PRODUCTS:
                key = repr((str(func), tree_map(meta, args), tree_map(meta, kwargs)))
                self.calls[key] += 1
                self.ops[key] = (func, tree_map(meta, args), tree_map(meta, kwargs))
            return func(*args, **kwargs)

    return Recorder()


def replayed(func, args, kwargs):
    """A call of `func` on fresh tensors with the recorded layouts."""
    import torch
    from torch.utils._pytree import tree_map

    def fresh(m):
        if isinstance(m, Layout):
            # Strides as recorded, 0 included (an expanded gradient of a sum): one flat buffer, viewed.
            size = 1 + sum((n - 1) * st for n, st in zip(m.shape, m.stride)) if all(m.shape) else 0
            flat = torch.empty(size, dtype=m.dtype, device=m.device)
            flat = flat.normal_() if flat.is_floating_point() else flat.zero_()
            return flat.as_strided(m.shape, m.stride)
        return m

    is_leaf = lambda x: isinstance(x, Layout)  # noqa: E731  (a NamedTuple would be walked into)
    a, k = tree_map(fresh, args, is_leaf=is_leaf), tree_map(fresh, kwargs, is_leaf=is_leaf)
    return lambda: func(*a, **k)


def time_call(call, device: str, smoke: bool) -> float:
    """Fastest over rounds of the mean seconds of one call."""
    import torch

    calls, rounds = (2, 1) if smoke else (10, 5)
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(rounds):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def capture(cfg, r) -> dict:
    """The products of a D update, a D update with the lazy penalty, and a G update: phase -> Recorder;
    and each phase's FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    gan, s = r.gan, r.state
    every = lazy_every(gan)

    def d_update(penalised: bool):
        real, idx = r.data.next_batch(s.sampler)
        labels = r.data.batch_labels(idx) if gan.n_classes else None
        gan.d_updates = 0 if penalised else 1  # the lazy penalty runs where d_updates % every == 0
        gan.d_phase(real, labels)

    phases = {"d": lambda: d_update(False), "d_r1": lambda: d_update(True), "g": gan.g_phase}
    for call in phases.values():  # first calls: oneDNN primitives, allocations
        call()
    out = {}
    for name, call in phases.items():
        if name == "d_r1" and every == 1:
            continue
        with FlopCounterMode(display=False) as flops, recorder() as rec:
            call()
        out[name] = (rec, flops.get_total_flops())
        ops = Counter()
        for key, count in rec.calls.items():
            ops[rec.ops[key][0].overloadpacket.__name__] += count
        common.note(f"{name}: " + ", ".join(f"{n} x{c}" for n, c in sorted(ops.items())))
    return out


def bound(phases: dict, every: int, device: str, smoke: bool) -> dict:
    """Each distinct product timed alone, summed per step with each phase's weight."""
    weights = {"d": 1.0 - (1.0 / every if "d_r1" in phases else 0.0), "d_r1": 1.0 / every, "g": 1.0}
    timed: dict = {}
    conv = mm = calls = flop = r1 = 0.0
    for name, (rec, flops) in phases.items():
        w = weights[name]
        flop += w * flops
        phase_ms = 0.0
        for key, count in rec.calls.items():
            if key not in timed:
                timed[key] = time_call(replayed(*rec.ops[key]), device, smoke) * 1e3
            ms = count * timed[key]
            phase_ms += ms
            calls += w * count
            if rec.ops[key][0].overloadpacket.__name__ in CONVS:
                conv += w * ms
            else:
                mm += w * ms
        if name == "d_r1":
            r1 = phase_ms - sum(n * timed[k] for k, n in phases["d"][0].calls.items())
    total = conv + mm
    return {
        "conv_ms_step": conv,
        "mm_ms_step": mm,
        "bound_ms_step": total,
        "bound_steps_per_s": 1e3 / total,
        "gflop_step": flop / 1e9,
        "gflops_bound": flop / 1e9 / (total / 1e3),
        "calls_step": calls,
        "shapes": len(timed),
        "r1_ms": r1,
    }


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override of the recipe")
    args = p.parse_args()
    device = common.setup(args)
    import torch
    import train_speed

    with tempfile.TemporaryDirectory(prefix="ganctl_conv_bound_") as tmp:
        root, real = common.mnist_test_root(args.data_root, Path(tmp), n=1000 if args.smoke else 10_000)
        extra = [f"dataset.root={root}", "dataset.split=test", *args.set]
        warmup, window, repeats = (2, 2, 1) if args.smoke else (20, 100, 3)
        if args.smoke:
            extra.append("model.width=8")
        overrides = common.train_overrides("mnist_best", warmup + window, warmup, device, extra)
        cfg, r = built_run(overrides)
        paths = r.state.fast_path
        phases = capture(cfg, r)
        values = bound(phases, lazy_every(r.gan), device, args.smoke)
        del r
        common.note(
            f"{values['shapes']} distinct products timed alone: {values['bound_ms_step']:.2f} ms per step "
            f"({values['conv_ms_step']:.2f} convolutions, {values['mm_ms_step']:.2f} matrix products); "
            f"fast path {paths}"
        )
        rates = []
        for i in range(repeats):
            rates.append(train_speed.ganctl_rate(overrides, Path(tmp) / f"run_{i}"))
            common.note(f"  ganctl {rates[-1]:.2f} steps/s")
    median = statistics.median(rates)
    values.update(common.spread("ganctl_steps_per_s", rates))
    values["ganctl_ms_step"] = 1e3 / median
    values["fraction"] = values["bound_ms_step"] / values["ganctl_ms_step"]
    values["channels_last"] = int(bool(paths.get("channels_last")))
    values["precision"] = str(paths.get("precision", "fp32"))
    values["real_data"] = int(real)
    values["cpu"] = common.cpu_model()
    values["torch"] = torch.__version__.split("+")[0]
    common.emit("conv_bound", device, values)


if __name__ == "__main__":
    sys.exit(main())
