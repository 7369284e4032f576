"""trainer.minutes: a run's length from a time budget, decided before the run's first update.

The learning-rate schedule is a function of the step and of the run's length, so the length must
be known before the first real update. It is timed on throwaway copies of G, D and their
optimisers (the fast-path timing's copies, training.build.throwaway_step), with the random
streams forked, so the run that follows is exactly a run of trainer.steps=N: the same weights, bit
for bit, and a resume continues it as any other (the checkpoint's config records N).

The budget counts from the start of training (data loading and the fast-path timing included) to
the last update; the command's start-up (interpreter, imports) and the end-of-run pictures come on
top, a few seconds. So do evaluations (trainer.eval_every), which the timing does not run; sample
grids, log rows and checkpoints are a fraction of a per cent of a recipe's steps.

The timed steps cover whole cycles of the step's periodic work: a lazy penalty (R1 every 16 D
updates in mnist_best, 1.8x a plain step's time) timed in 13 steps that missed it set a one-minute
run 4% past its budget.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import torch

from ganctl.config import RunConfig
from ganctl.losses import for_run

WARMUP = 3  # untimed steps first: first-call allocations, oneDNN primitive creation, torch.compile
MIN_TIMED, MAX_TIMED = 5, 30  # timed steps, at least and at most (rounded up to whole cycles)
TIMED_SHARE = 0.01  # the timing stops after this share of the budget, once MIN_TIMED steps are in
MAX_CYCLE = 128  # a penalty of a longer period is left out: its step is under 1% of the run's time
ROUND_SHARE = 0.1  # rounding up to a whole cycle stops after this share of the budget


def cycle(cfg: RunConfig) -> int:
    """Steps after which the step's work repeats: each lazy penalty runs every `every` D updates,
    d_steps of which make a step."""
    steps = 1
    for penalty in for_run(cfg.loss).penalties:
        period = penalty.every // math.gcd(penalty.every, cfg.trainer.d_steps)
        if period <= MAX_CYCLE:
            steps = math.lcm(steps, period)
    return steps if steps <= MAX_CYCLE else 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_for_minutes(cfg: RunConfig, started: float, step: Callable[[], object], device: torch.device) -> int:
    """trainer.steps for a budget of trainer.minutes counted from `started` (time.perf_counter()),
    from the time of `step()`, one whole throwaway training step; logs the choice in one line."""
    budget = cfg.trainer.minutes * 60
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        t0 = time.perf_counter()
        for _ in range(WARMUP):
            step()
        _sync(device)
        t1 = time.perf_counter()
        timed, every = 0, cycle(cfg)
        most = math.ceil(MAX_TIMED / every) * every

        def more() -> bool:
            spent = time.perf_counter() - t1
            if timed < MIN_TIMED:
                return True
            if timed % every:  # finish the cycle, unless that would eat into the run itself
                return spent < ROUND_SHARE * budget
            return timed < most and spent < TIMED_SHARE * budget

        while more():
            step()
            timed += 1
            if timed >= MIN_TIMED:
                _sync(device)
        t2 = time.perf_counter()
    per_step = (t2 - t1) / timed
    # The real run's first steps pay the same one-off costs (allocations, compilation) again.
    first_calls = max(0.0, (t1 - t0) - WARMUP * per_step)
    left = budget - (t2 - started) - first_calls
    steps = max(1, math.floor(left / per_step))
    logging.getLogger("ganctl.budget").info(
        f"trainer.minutes={cfg.trainer.minutes:g}: {per_step * 1e3:.2f} ms per step (timed over {timed} "
        f"steps), {t2 - started:.1f} s of set-up; trainer.steps={steps}"
    )
    return steps
