"""Which fast paths a run takes: trainer.backward, cpu_matmul, channels_last and precision resolved.

`auto` never assumes a vendor: oneDNN's products were 1.5-2.2x faster than MKL's on an AMD EPYC
and slower on an Intel Xeon (docs/BENCHMARKS.md), hand-written gradients pay only where autograd's
overhead is a large part of the step, and channels-last convolutions win on some CPUs and lose on
others. So `auto` times one D and one G update of every allowed combination on throwaway copies
of this run's models, on its own shapes, and keeps the fastest; the plain path (autograd, BLAS,
the default memory format) wins ties. The pick is cached per machine, thread count, torch version
and shapes (ganctl.autotune), so only the first run of a kind pays for it, and a resumed run
takes the same path as the run it continues.

trainer.precision=auto adds bf16 autocast to the candidates where the hardware has bf16 units (a
CPU with AVX512-BF16 or AMX, a GPU of compute capability 8.0 or later). Lower precision changes
the numbers a run computes, so it must be clearly faster, not just within the noise: bf16 is
taken only when it beats the fastest fp32 combination by LOWER_PRECISION_GAIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ganctl import autotune
from ganctl.config import RunConfig
from ganctl.errors import ConfigError
from ganctl.training.cpu_kernels import accelerate, onednn_available
from ganctl.training.manual_step import unsupported

BUDGET_S = 0.5  # the timing's share of start-up, at most (the first run of a kind only)
LOWER_PRECISION_GAIN = 0.10  # bf16 must take at most 90% of fp32's time to be picked


@dataclass(frozen=True)
class Paths:
    backward: str = "autograd"  # or "manual": hand-written MLP gradients (CPU)
    onednn: bool = False  # Linear products on oneDNN instead of the BLAS (CPU)
    channels_last: bool = False  # convolution nets in channels-last memory format
    precision: str = "fp32"  # or "bf16", "fp16": autocast

    def __str__(self) -> str:
        return (
            f"backward={self.backward}, cpu_matmul={'onednn' if self.onednn else 'blas'}, "
            f"channels_last={str(self.channels_last).lower()}, precision={self.precision}"
        )


def apply(paths: Paths, G: nn.Module, D: nn.Module, device: torch.device, compiled: bool) -> None:
    """Put G and D in the memory format and (on a CPU, uncompiled) onto the kernels `paths` names."""
    if paths.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    if device.type == "cpu" and not compiled:
        # torch.compile traces plain modules: the CPU kernels are an eager-mode speed-up.
        accelerate(G, paths.onednn)
        accelerate(D, paths.onednn)


def candidates(cfg: RunConfig, device: torch.device, world: int, is_conv: bool) -> list[Paths]:
    """Every combination this run allows, the plain path first."""
    t = cfg.trainer
    if t.backward == "manual" and world > 1:  # torchrun's processes, which validation cannot see
        raise ConfigError(
            f"trainer.backward=manual does not support {unsupported(cfg, world)}; "
            "accepted: trainer.backward=auto or autograd for this run"
        )
    cpu = device.type == "cpu" and not t.compile
    backwards = (
        [t.backward]
        if t.backward != "auto"
        else (["autograd"] + (["manual"] if cpu and not unsupported(cfg, world) else []))
    )
    onednn = (
        [t.cpu_matmul == "onednn"]
        if t.cpu_matmul != "auto"
        else ([False] + ([True] if cpu and onednn_available() else []))
    )
    channels_last = [bool(t.channels_last)] if t.channels_last is not None else ([False, True] if is_conv else [False])
    precisions = [t.precision] if t.precision != "auto" else ["fp32"] + (["bf16"] if native_bf16(device) else [])
    return [
        Paths(b, o, c, p)
        for p in precisions
        for b in backwards
        for o in onednn
        for c in channels_last
        # The manual step is fp32 only; oneDNN's Linear products run outside autocast only, so
        # under bf16 both matmul settings are the same path.
        if p == "fp32" or (b == "autograd" and (not o or t.cpu_matmul == "onednn"))
    ]


def native_bf16(device: torch.device) -> bool:
    """Whether this device has bf16 arithmetic units (elsewhere autocast emulates bf16, slowly)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.3 has no including_emulation and counts native support only
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        flags = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return torch.backends.mkldnn.is_available() and any(f is not None and f() for f in flags)
    return False


def choose(
    cfg: RunConfig,
    device: torch.device,
    world: int,
    is_conv: bool,
    trial: Callable[[Paths], Callable[[], object]],
    key: dict,
) -> tuple[Paths, str | None]:
    """The paths for this run, and why (None when there was nothing to choose).

    `trial(paths)` returns a call of one update taking those paths.
    """
    options = candidates(cfg, device, world, is_conv)
    if len(options) == 1:
        return options[0], None
    lazy = {str(p): _lazy(trial, p) for p in options}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        # The timing's random draws must not shift the run's random stream.
        choice = autotune.choose("fast path", key, lazy, budget_s=BUDGET_S)
    names = [str(p) for p in options]
    picked = options[names.index(_by_precision(choice, names))]
    return picked, _reason(choice, picked, options[0])


def _by_precision(choice: autotune.Choice, names: list[str]) -> str:
    """The pick, held to LOWER_PRECISION_GAIN where it is a lower precision than fp32's best.

    `names` are the candidates in order, the plain path first (a cached entry's timings come back
    in the cache file's sorted order)."""
    t = choice.timings_ms
    if not t or choice.value.endswith("precision=fp32"):
        return choice.value
    full = {k: t[k] for k in names if k.endswith("precision=fp32")}
    if not full:  # an explicit precision: nothing to weigh it against
        return choice.value
    best_full = autotune.pick(full, autotune.MARGIN)
    return choice.value if t[choice.value] <= (1 - LOWER_PRECISION_GAIN) * t[best_full] else best_full


def _reason(choice: autotune.Choice, picked: Paths, plain: Paths) -> str:
    """One line: the pick, its time per update against the plain path's, and where it came from."""
    if not choice.timings_ms:
        return f"fast path {picked} ({choice.note})"
    t = choice.timings_ms
    when = f"cached from {choice.measured_at}" if choice.cached else "measured now"
    note = f"; {choice.note}" if choice.note else ""
    return (
        f"fast path {picked}: {t[str(picked)]:.2f} ms per update against {t[str(plain)]:.2f} ms for "
        f"the plain path ({len(t)} combinations timed, {when}{note})"
    )


def _lazy(trial, paths: Paths) -> Callable[[], object]:
    """The trial's call, built on first use: a cached pick builds none of them."""
    built: list = []

    def call():
        if not built:
            built.append(trial(paths))
        return built[0]()

    return call
