"""Which fast paths a run takes: trainer.backward, channels_last, precision and threads resolved.

`auto` never assumes a vendor: hand-written gradients pay only where autograd's overhead is a
large part of the step, and channels-last convolutions win on some CPUs and lose on others. So
`auto` times one D and one G update of every allowed combination on throwaway copies of this
run's models, on its own shapes, and keeps the fastest; the plain path (autograd, the default
memory format) wins ties. The pick is cached per machine, thread count, torch version and shapes
(ganctl.autotune), so only the first run of a kind pays for it. It is part of the run: the
checkpoint keeps it (TrainingState.fast_path) and a resume takes it again (`kept`), or says in
one line why it cannot (another kind of device, a path this run does not allow) and chooses anew.

trainer.precision=auto adds bf16 autocast to the candidates where the hardware has bf16 units (a
CPU with AVX512-BF16 or AMX, a GPU of compute capability 8.0 or later). Lower precision changes
the numbers a run computes, so it must be clearly faster, not just within the noise: bf16 is
taken only when it beats the fastest fp32 combination by LOWER_PRECISION_GAIN.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from ganctl import autotune
from ganctl.config import RunConfig
from ganctl.errors import ConfigError
from ganctl.training.manual_step import unsupported

BUDGET_S = 0.5  # the timing's share of start-up, at most (the first run of a kind only)
LOWER_PRECISION_GAIN = 0.10  # bf16 must take at most 90% of fp32's time to be picked


@dataclass(frozen=True)
class Paths:
    backward: str = "autograd"  # or "manual": hand-written MLP gradients (CPU)
    channels_last: bool = False  # convolution nets in channels-last memory format
    precision: str = "fp32"  # or "bf16", "fp16": autocast
    threads: Optional[int] = None  # torch's intra-op threads; None: the count the process has

    def __str__(self) -> str:
        text = f"backward={self.backward}, channels_last={str(self.channels_last).lower()}, precision={self.precision}"
        return text if self.threads is None else f"{text}, threads={self.threads}"

    def as_dict(self, device: torch.device) -> dict:
        """The pick as the checkpoint and the run summary keep it, with the kind of device it was made on."""
        return {"device": device.type, **asdict(self)}


def apply(paths: Paths, G: nn.Module, D: nn.Module) -> None:
    """Put G and D in the memory format `paths` names."""
    if paths.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)


@contextlib.contextmanager
def threads_kept() -> Iterator[None]:
    """Give the process back the intra-op thread count it had: a run sets its own (`use_threads`)."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def at_threads(count: int | None) -> Iterator[None]:
    """The block runs on `count` intra-op threads (None: as it is), then on the count it had."""
    if count is None or count == torch.get_num_threads():
        yield
        return
    with threads_kept():
        torch.set_num_threads(count)
        yield


def use_threads(paths: Paths) -> None:
    """Train on the intra-op thread count `paths` names (None: leave the process's)."""
    if paths.threads is not None and paths.threads != torch.get_num_threads():
        torch.set_num_threads(paths.threads)


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
    channels_last = [bool(t.channels_last)] if t.channels_last is not None else ([False, True] if is_conv else [False])
    precisions = [t.precision] if t.precision != "auto" else ["fp32"] + (["bf16"] if native_bf16(device) else [])
    return [
        Paths(b, c, p, n)
        for p in precisions
        for b in backwards
        for c in channels_last
        for n in thread_counts(cfg, device, world)
        if p == "fp32" or b == "autograd"  # the manual step is fp32 only
    ]


def thread_counts(cfg: RunConfig, device: torch.device, world: int) -> list[Optional[int]]:
    """trainer.threads's candidates: the setting, or with null the process's count and one thread.

    A step of tiny tensors (setup 002's 5- and 10-unit MLPs) gains nothing from a second thread and pays
    OpenMP's hand-offs on every op: one thread trained it ~8% faster on a quiet 2-core Xeon, and a
    busy machine makes the hand-offs far worse. Bigger steps split their work across the threads
    and lose with one. So one thread is a candidate, timed like the other paths, on an eager CPU
    run of one process that has more than one thread to give up.
    """
    t = cfg.trainer
    if t.threads is not None:
        return [t.threads]
    one_process = device.type == "cpu" and not t.compile and world == 1
    return [None, 1] if one_process and torch.get_num_threads() > 1 else [None]


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
    saved: dict | None = None,
) -> tuple[Paths, str | None]:
    """The paths for this run, and why (None when there was nothing to choose).

    `trial(paths)` returns a call of one update taking those paths. `saved` is the pick a resumed
    checkpoint holds: a resume keeps it where it can, since another pick changes the run's numbers.
    """
    keep, why = kept(saved, cfg, device, world, is_conv)
    if keep is not None:
        return keep, f"fast path {keep} (kept from the checkpoint)"
    options = candidates(cfg, device, world, is_conv)
    if len(options) == 1:
        return options[0], why
    lazy = {str(p): _lazy(trial, p) for p in options}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        # The timing's random draws must not shift the run's random stream.
        choice = autotune.choose("fast path", key, lazy, budget_s=BUDGET_S)
    by_name = {str(p): p for p in options}
    picked = _by_threads(choice, by_name[_by_precision(choice, by_name)])
    reason = _reason(choice, picked, options[0])
    return picked, reason if why is None else f"{why}; {reason}"


def kept(saved: dict | None, cfg: RunConfig, device: torch.device, world: int, is_conv: bool):
    """(the checkpoint's pick, None) where this run can take it again, else (None, one line why).

    Settings the resumed config gives explicitly win over the checkpoint's pick; `auto` ones take
    it. A checkpoint written before ganctl kept its pick has none: (None, None), chosen as new.
    """
    if not saved:
        return None, None
    t = cfg.trainer
    want = Paths(
        t.backward if t.backward != "auto" else str(saved.get("backward", "autograd")),
        bool(t.channels_last) if t.channels_last is not None else bool(saved.get("channels_last", False)),
        t.precision if t.precision != "auto" else str(saved.get("precision", "fp32")),
        t.threads if t.threads is not None else saved.get("threads"),
    )
    same_kind = saved.get("device", device.type) == device.type
    # Any thread count runs anywhere: a resume keeps the saved one (a checkpoint from before
    # ganctl chose it has none: the process's own count, as then).
    allowed = {replace(p, threads=want.threads) for p in candidates(cfg, device, world, is_conv)}
    if same_kind and want in allowed:
        return want, None
    if not same_kind:
        why = f"it was picked on {saved['device']}, this run trains on {device.type}"
    elif want.backward == "manual" and (device.type != "cpu" or t.compile or unsupported(cfg, world)):
        why = f"the manual step does not apply here: {unsupported(cfg, world) or 'not an eager CPU run'}"
    elif want.precision == "bf16" and not native_bf16(device):
        why = "this device has no bf16 units"
    else:
        why = "this run's settings do not allow it"
    return None, f"the checkpoint's fast path {want} cannot be kept ({why}); choosing again"


def _by_precision(choice: autotune.Choice, by_name: dict[str, Paths]) -> str:
    """The pick, held to LOWER_PRECISION_GAIN where it is a lower precision than fp32's best.

    `by_name` holds the candidates in order, the plain path first (a cached entry's timings come
    back in the cache file's sorted order)."""
    t = choice.timings_ms
    if not t or by_name[choice.value].precision == "fp32":
        return choice.value
    full = {k: t[k] for k, p in by_name.items() if p.precision == "fp32"}
    if not full:  # an explicit precision: nothing to weigh it against
        return choice.value
    best_full = autotune.pick(full, autotune.MARGIN)
    return choice.value if t[choice.value] <= (1 - LOWER_PRECISION_GAIN) * t[best_full] else best_full


def _by_threads(choice: autotune.Choice, picked: Paths) -> Paths:
    """The pick, at the process's thread count unless one thread beats that same path by the
    margin: the count governs every update of the run, so a tie keeps the process's."""
    t, own = choice.timings_ms, replace(picked, threads=None)
    if picked.threads != 1 or str(own) not in t:  # an explicit count, or nothing to weigh it against
        return picked
    return picked if t[str(picked)] < (1 - autotune.MARGIN) * t[str(own)] else own


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
    """The trial's call, built on first use (a cached pick builds none of them), run on the
    thread count `paths` names."""
    built: list = []

    def call():
        if not built:
            built.append(trial(paths))
        with at_threads(paths.threads):
            return built[0]()

    return call
