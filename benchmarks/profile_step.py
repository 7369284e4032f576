"""Where one mnist_best step's time goes: torch.profiler over whole steps, summed by kind of work.

The run is built as `ganctl train +experiment=mnist_best` builds it (training.build: models, fast
path, optimisers, EMA), and the script drives its parts in the loop's order (ganctl.commands.train:
schedule, batch, D update, G update, EMA, the step's log statistics) for 2 x loss.r1_every steps,
so the lazy R1 update comes in its true share. Each of the profiler's events is put in one bucket:

  convolutions     every convolution and convolution backward (transposed ones, and R1's double
                   backward's, included)
  matrix products  mm/addmm/bmm outside spectral norm (the Linear layers)
  batch norm       G's batch norm, forward and backward
  spectral norm    the power iteration and weight division (the parametrisation's forward)
  DiffAugment      the augmentation's forward
  R1 (other ops)   the lazy R1's own element-wise work: its D pass's and first backward's non-conv
                   ops and the double backward's (its convolutions are under convolutions)
  EMA, optimiser, data, logging   G_ema's update; Adam (and the lr schedule); drawing the batch;
                   keeping the step's statistics (a log row's reduction and host sync is timed
                   once and divided by trainer.log_every)
  other ops        activations, losses, the remaining element-wise ops and their gradients
  overhead         time inside the steps that no op accounts for: Python, dispatch, autograd engine

The wall time per step is measured without the profiler (its own overhead inflates small ops); the
table's ms are each bucket's share of the profiled time times that wall time.

One result line, `profile_step wall_ms_step=... <bucket>_ms=... <bucket>_share=... top="..."`.
`--set KEY=VALUE` (repeatable, this script only) adds overrides. Its stderr holds the table.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from conv_bound import built_run, lazy_every

import common

BUCKETS = [
    "convolutions",
    "matrix products",
    "batch norm",
    "spectral norm",
    "DiffAugment",
    "R1 (other ops)",
    "EMA",
    "optimiser",
    "data",
    "logging",
    "other ops",
    "overhead",
]
RANGES = {  # the script's record_function ranges, and what they hold whole
    "ganctl::ema": "EMA",
    "ganctl::optim": "optimiser",
    "ganctl::data": "data",
    "ganctl::log": "logging",
    "ganctl::augment": "DiffAugment",
    "ganctl::spectral_norm": "spectral norm",
}
STEP_RANGES = ("ganctl::d_phase", "ganctl::g_phase", "ganctl::r1")


def labelled(name: str, fn):
    """fn inside a profiler range called `name`."""
    from torch.profiler import record_function

    def call(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)

    return call


def label_parts(r) -> None:
    """Profiler ranges around the parts that are no op of their own: the augmentation, the lazy
    penalty, spectral norm's parametrisation (forward hooks), the optimisers' steps."""
    from torch.nn.utils.parametrize import is_parametrized
    from torch.profiler import record_function

    gan = r.gan
    if hasattr(gan, "augment"):
        gan.augment = labelled("ganctl::augment", gan.augment)
    penalties = tuple(replace(p, fn=labelled("ganctl::r1", p.fn)) for p in gan.loss.penalties)
    gan.loss = replace(gan.loss, penalties=penalties)
    gan._step_d = labelled("ganctl::optim", gan._step_d)
    gan._step_g = labelled("ganctl::optim", gan._step_g)
    for module in r.state.D.modules():
        if is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                opened: list = []

                def enter(module, args, opened=opened):
                    opened.append(record_function("ganctl::spectral_norm").__enter__())

                def leave(module, args, out, opened=opened):
                    opened.pop().__exit__(None, None, None)

                p.register_forward_pre_hook(enter)
                p.register_forward_hook(leave)


class Loop:
    """The training loop's body over the built run, step by step."""

    def __init__(self, r):
        from ganctl.training.runlog import PendingStats

        self.r, self.pending = r, PendingStats()

    def step(self) -> None:
        from torch.profiler import record_function

        r, s, gan = self.r, self.r.state, self.r.gan
        with record_function("ganctl::optim"):
            r.schedule.apply(s.step)
        with record_function("ganctl::data"):
            real, idx = r.data.next_batch(s.sampler)
            labels = r.data.batch_labels(idx) if gan.n_classes else None
        with record_function("ganctl::d_phase"):
            d = gan.d_phase(real, labels)
        with record_function("ganctl::g_phase"):
            g = gan.g_phase()
        if s.ema is not None:
            with record_function("ganctl::ema"):
                s.ema.update(s.G)
        with record_function("ganctl::log"):
            self.pending.add(d, g)
        s.step += 1

    def log_row(self) -> None:
        from ganctl.training.distributed import Rank

        self.pending.reduce(self.r.gan.summarise, Rank(), self.r.device)


def bucket(event) -> str:
    """The bucket of one profiler event's self time."""
    name = event.name
    chain = []
    parent = event
    while parent is not None:
        chain.append(parent.name)
        parent = parent.cpu_parent
    for label in chain:
        if label in RANGES:
            return RANGES[label]
        if label.startswith("Optimizer."):
            return "optimiser"
    if "convolution" in name:
        return "convolutions"
    if "batch_norm" in name:
        return "batch norm"
    if name in ("aten::mm", "aten::addmm", "aten::bmm"):
        return "matrix products"
    if name in STEP_RANGES or name.startswith("autograd::engine") or name.startswith("ganctl::"):
        return "overhead"
    if "ganctl::r1" in chain or any("BackwardBackward" in label for label in chain):
        return "R1 (other ops)"
    return "other ops"


def profile(loop: Loop, steps: int) -> dict:
    """Each bucket's share of the profiled steps' self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            loop.step()
    totals: dict = defaultdict(float)
    for event in prof.events():
        totals[bucket(event)] += event.self_cpu_time_total
    whole = sum(totals.values())
    return {b: totals.get(b, 0.0) / whole for b in BUCKETS}


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override of the recipe")
    args = p.parse_args()
    device = common.setup(args)
    import torch

    with tempfile.TemporaryDirectory(prefix="ganctl_profile_") as tmp:
        root, real = common.mnist_test_root(args.data_root, Path(tmp), n=1000 if args.smoke else 10_000)
        extra = [f"dataset.root={root}", "dataset.split=test", *args.set] + (["model.width=8"] if args.smoke else [])
        cfg, r = built_run(common.train_overrides("mnist_best", 1000, 500, device, extra))
    every = lazy_every(r.gan)
    steps = every if args.smoke else 2 * every
    label_parts(r)
    loop = Loop(r)
    for _ in range(3):  # first calls: oneDNN primitives, allocations
        loop.step()
    start = time.perf_counter()
    for _ in range(steps):
        loop.step()
    wall = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    loop.log_row()
    # A log row every trainer.log_every steps: its reduction and host sync, per step.
    row = (time.perf_counter() - start) / cfg.trainer.log_every
    shares = profile(loop, steps)
    ms = {b: share * wall * 1e3 for b, share in shares.items()}
    ms["logging"] += row * 1e3
    total = sum(ms.values())
    common.note(f"{steps} steps of {cfg.model.arch} width {cfg.model.width}, fast path {r.state.fast_path}:")
    common.note(f"  {'bucket':<16} {'ms/step':>8} {'share':>6}")
    for b in sorted(BUCKETS, key=lambda b: -ms[b]):
        common.note(f"  {b:<16} {ms[b]:8.2f} {ms[b] / total:6.1%}")
    key = lambda b: b.split(" ")[0].lower().replace("diffaugment", "augment")  # noqa: E731
    values = {"wall_ms_step": total, "steps": steps}
    for b in BUCKETS:
        values[f"{key(b)}_ms"] = ms[b]
        values[f"{key(b)}_share"] = ms[b] / total
    top = sorted(BUCKETS, key=lambda b: -ms[b])[:5]
    values["top"] = ", ".join(f"{b} {ms[b] / total:.0%}" for b in top)
    values["real_data"] = int(real)
    values["cpu"] = common.cpu_model()
    values["torch"] = torch.__version__.split("+")[0]
    common.emit("profile_step", device, values)


if __name__ == "__main__":
    sys.exit(main())
