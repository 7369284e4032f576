"""Devices by name: what `auto`, `cpu`, `cuda:N` and `mps` mean on the machine at hand."""

from __future__ import annotations

import torch

from ganctl.errors import ConfigError


def has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(spec: str, key: str = "trainer.device") -> torch.device:
    """auto -> CUDA, then MPS, then CPU; anything named must exist on this machine."""
    mps = has_mps()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    accepted = "auto, cpu" + (", cuda, cuda:N" if torch.cuda.is_available() else "") + (", mps" if mps else "")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}={spec!r} is not a device; accepted: {accepted}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={spec!r} but this machine has no CUDA device; accepted: {accepted}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key}={spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist; accepted: {accepted}"
            )
    elif device.type == "mps" and not mps:
        raise ConfigError(f"{key}={spec!r} but MPS is not available here; accepted: {accepted}")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key}={spec!r} is not supported; accepted: {accepted}")
    return device


def rng_state(device: torch.device) -> dict:
    """The random streams a run draws from: the CPU's and, on CUDA, the device's."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
