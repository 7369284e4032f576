"""Which CPU fast paths a run takes: trainer.cpu_matmul and trainer.backward resolved for this machine."""
from __future__ import annotations

import torch
from torch import nn

from ganctl.config import RunConfig
from ganctl.training.cpu_kernels import accelerate, onednn_available
from ganctl.training.manual_step import use_manual

__all__ = ["prepare_cpu", "use_manual"]


def use_onednn(cfg: RunConfig) -> bool:
    """trainer.cpu_matmul resolved: oneDNN for the Linear layers' products, or the BLAS."""
    choice = cfg.trainer.cpu_matmul
    return choice != "blas" and onednn_available()


def prepare_cpu(cfg: RunConfig, G: nn.Module, D: nn.Module, device: torch.device) -> None:
    """Re-class G's and D's layers onto the CPU kernels this run uses (nothing on other devices).

    torch.compile traces plain modules: the CPU kernels are an eager-mode speed-up.
    """
    if device.type != "cpu" or cfg.trainer.compile:
        return
    onednn = use_onednn(cfg)
    accelerate(G, onednn)
    accelerate(D, onednn)
