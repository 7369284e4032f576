"""Pick a fast path by timing its candidates on the machine at hand, and remember the pick.

Which kernel or code path is fastest depends on the CPU (MKL takes its AVX2 path on AMD, its
AVX-512/AMX path on Intel), the thread count, the torch build and the shapes, so an `auto`
setting times its candidates here instead of assuming a vendor. The result is cached per machine,
torch version and shapes in `cache_path()`, so only the first run on a machine pays for it.

GANCTL_AUTOTUNE=off (or 0) takes the default without timing; =fresh times again and overwrites.
This module sits at the bottom of the package: it imports torch and the standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

log = logging.getLogger(__name__)
MIN_ROUNDS = 3
MARGIN = 0.03  # how much faster than the plain path a fast path must be to be picked
NOISY_SPREAD = 3.0  # slowest / fastest call of one candidate beyond which the machine was busy
_clock = time.perf_counter  # a module global so tests can swap in a fake clock


@dataclass
class Choice:
    name: str  # the setting, e.g. "trainer.cpu_matmul"
    value: str  # the winning candidate
    timings_ms: dict[str, float] = field(default_factory=dict)  # candidate -> median ms per call
    cached: bool = False
    measured_at: str = ""  # when the timings were taken (UTC)
    note: str = ""  # why nothing was timed, where nothing was

    def reason(self) -> str:
        if not self.timings_ms:
            return f"{self.name}=auto chose {self.value} ({self.note})"
        times = ", ".join(f"{k} {v:.2f} ms" for k, v in self.timings_ms.items())
        when = (
            f"cached from {self.measured_at}"
            if self.cached
            else "measured now" + (f"; {self.note}" if self.note else "")
        )
        return f"{self.name}=auto chose {self.value}: {times} per call ({when})"


def cache_path() -> Path:
    folder = os.environ.get("GANCTL_CACHE")
    if not folder:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "ganctl"
    return Path(folder).expanduser() / "autotune.json"


def cpu_fingerprint() -> str:
    """CPU model, a hash of its feature flags, torch's thread count and the torch version.

    The flags are hashed in because a VM's model name can be as vague as "AMD EPYC", which covers
    CPUs with and without AVX-512.
    """
    model = flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():  # Linux; the first CPU's lines
            k, _, v = (part.strip() for part in line.partition(":"))
            if k == "model name" and not model:
                model = v
            elif k in ("flags", "Features") and not flags:  # x86, ARM
                flags = hashlib.sha1(" ".join(sorted(v.split())).encode()).hexdigest()[:8]
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return f"{model} [{flags or '-'}]; {torch.get_num_threads()} threads; torch {torch.__version__}"


def _machine(key: dict) -> str:
    device = str(key.get("device", "cpu"))
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{cpu_fingerprint()}; {torch.cuda.get_device_name(torch.device(device))}"
    return cpu_fingerprint()


def _load(path: Path) -> dict:
    # A missing, unreadable or corrupt cache is an empty one: the worst case is timing again.
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(path: Path, entry_key: str, entry: dict) -> None:
    # Read-modify-write, then an atomic replace: a reader never sees half a file. Two runs writing
    # at once can lose one entry, which costs only a re-measurement next time.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load(path)
        data[entry_key] = entry
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".autotune.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        log.debug("autotune: cache %s not written: %s", path, e)


def _valid(entry: object, candidates: dict) -> bool:
    """Whether a cache entry is one _store wrote for these candidates (the file may be hand-edited)."""
    return (
        isinstance(entry, dict)
        and entry.get("value") in candidates
        and isinstance(entry.get("timings_ms"), dict)
        and set(entry["timings_ms"]) == set(candidates)
        and all(isinstance(t, (int, float)) for t in entry["timings_ms"].values())
    )


def _call(fn: Callable[[], object]) -> float:
    t0 = _clock()
    fn()
    if torch.cuda.is_initialized():  # CUDA calls return before the work is done
        torch.cuda.synchronize()
    return _clock() - t0


def _measure(candidates: dict[str, Callable[[], object]], budget_s: float) -> tuple[dict[str, float], bool]:
    """Median ms per call of each candidate, and whether the timings were too noisy to keep."""
    deadline = _clock() + budget_s
    for fn in candidates.values():  # first calls pay for allocation, primitive creation, caches
        _call(fn)
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    order, rounds = list(candidates.items()), 0
    # Interleaved rounds: this host's speed drifts by 20-30% over minutes, and timing A then B in
    # blocks would credit the drift to the kernels. Reversing the order each round (A B, B A, ...)
    # also evens out which candidate runs right after the other.
    while rounds < MIN_ROUNDS or _clock() < deadline:
        for k, fn in order if rounds % 2 == 0 else order[::-1]:
            samples[k].append(_call(fn))
        rounds += 1
    # The median, not the mean: a call that the scheduler or the other vCPU interrupted is an
    # outlier of several times the typical time and would swing a mean.
    # Another process on these cores (a test run, a second training) stretches calls by 2-10x at
    # random: a pick made then is no pick to remember. The spread of each candidate's calls says so.
    # (Sub-millisecond differences are the timer's and the cache's, not another process's.)
    noisy = any(max(v) > NOISY_SPREAD * min(v) and max(v) - min(v) > 1e-3 for v in samples.values())
    return {k: 1e3 * statistics.median(v) for k, v in samples.items()}, noisy


def pick(timings_ms: dict[str, float], margin: float) -> str:
    # The first candidate is the plain, safe path; another must beat it by more than the margin,
    # so a tie within the noise never switches to a fast path that does not pay for itself.
    first = next(iter(timings_ms))
    best = min(timings_ms, key=timings_ms.get)
    return best if timings_ms[best] < timings_ms[first] * (1 - margin) else first


def choose(
    name: str,
    key: dict,
    candidates: dict[str, Callable[[], object]],
    *,
    budget_s: float = 0.5,
    default: str | None = None,
    cache: bool = True,
    margin: float = MARGIN,
) -> Choice:
    """The fastest of `candidates` (name -> a call of one step of it) on this machine.

    `key` describes what is timed (shapes, dtype, device, ...); with the machine's fingerprint,
    `name` and the candidates' names it keys the cache. Call it after torch.set_num_threads: the
    thread count is part of the fingerprint. Candidates may be stateful (a step on throwaway
    copies); each is called at least 1 + MIN_ROUNDS times.
    """
    if not candidates:
        raise ValueError(f"{name}: no candidates")
    if default is not None and default not in candidates:
        raise ValueError(f"{name}: default {default!r} is not a candidate ({', '.join(candidates)})")
    mode = os.environ.get("GANCTL_AUTOTUNE", "").strip().lower()
    if mode in ("off", "0") or len(candidates) == 1:
        note = "GANCTL_AUTOTUNE=off, not measured" if len(candidates) > 1 else "the only candidate"
        choice = Choice(name, default or next(iter(candidates)), note=note)
        log.debug(choice.reason())
        return choice
    entry_key = json.dumps(
        {"machine": _machine(key), "name": name, "key": key, "candidates": sorted(candidates)},
        sort_keys=True,
        default=str,
    )
    path = cache_path()
    if cache and mode != "fresh":
        hit = _load(path).get(entry_key)
        if _valid(hit, candidates):
            choice = Choice(name, hit["value"], hit["timings_ms"], True, str(hit.get("measured_at", "?")))
            log.debug(choice.reason())
            return choice
    timings, noisy = _measure(candidates, budget_s)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    choice = Choice(
        name,
        pick(timings, margin),
        timings,
        False,
        now,
        note="noisy timings: the machine was busy, not cached" if noisy else "",
    )
    if cache and not noisy:
        _store(path, entry_key, {"value": choice.value, "timings_ms": timings, "measured_at": now})
    log.debug(choice.reason())
    return choice
