"""Model families by name, their shared building blocks, and the latent distribution."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ganctl.config import ModelConfig

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),  # 0.2 is the slope every reference setup uses
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
OUTPUTS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "none": nn.Identity,
}
NORMS = ("none", "batch", "layer")


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout's mask for x, already scaled by 1/(1 - p): keep where a uniform draw < 1 - p.

    The draws are fp32 whatever x's dtype: bf16 uniforms are too coarse (p = 0.9 would keep
    10.2% instead of 10%). The manual training step draws its masks here too, so both steps use
    the same random numbers.
    """
    keep = 1.0 - p
    mask = torch.rand_like(x, dtype=torch.float32).lt_(keep).div_(keep)
    return mask if x.dtype == torch.float32 else mask.to(x.dtype)


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask is drawn as uniform < keep instead of by bernoulli_.

    The mask has the same distribution; on CPU, bernoulli_ draws element by element and was the
    largest single op of setup 004's step: 483 us for a 64 x 1024 mask against 146 us this way
    (2 threads, docs/BENCHMARKS.md). Other devices use nn.Dropout's own kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        return x * dropout_mask(x, self.p)


def _he_normal(module: nn.Module) -> None:
    # Setup 000's "xavier_init" draws N(0, 2/fan_in): He scaling despite its name.
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        fan_in = nn.init._calculate_correct_fan(module.weight, "fan_in")
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_in))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _dcgan_normal(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


INITS: dict[str, Callable[[nn.Module], None] | None] = {
    "default": None,  # PyTorch's own layer initialisation
    "he_normal": _he_normal,
    "dcgan_normal": _dcgan_normal,
}


def sample_latent(n: int, cfg: ModelConfig, device: torch.device | str) -> torch.Tensor:
    """z ~ N(0, I), or U[0, 1) per entry as in setup 002."""
    if cfg.latent == "uniform":
        return torch.rand(n, cfg.z_dim, device=device)
    return torch.randn(n, cfg.z_dim, device=device)


def build_models(cfg: ModelConfig, data_shape: tuple[int, ...],
                 cpu_matmul: str = "auto") -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of family `cfg.arch` for samples of `data_shape`.

    `cpu_matmul` picks the kernel of their Linear layers on CPU (see ganctl.models.linear).
    """
    G, D = MODELS[cfg.arch](cfg, data_shape)
    init = INITS[cfg.init]
    if init is not None:
        G.apply(init)
        D.apply(init)
    return set_cpu_matmul(G, cpu_matmul), set_cpu_matmul(D, cpu_matmul)


# Imported last: the families use the blocks above.
from ganctl.models import dcgan, mlp  # noqa: E402
from ganctl.models.linear import set_cpu_matmul  # noqa: E402

MODELS: dict[str, Callable[[ModelConfig, tuple[int, ...]], tuple[nn.Module, nn.Module]]] = {
    "mlp": mlp.build,
    "dcgan": dcgan.build,
}


def rows_independent(D: nn.Module) -> bool:
    """Whether D scores each row on its own, so that D(cat(a, b)) == cat(D(a), D(b)).

    Batch norm in training mode and setup 002's batch-moment features both mix the rows; a
    module says it does with a `mixes_rows = True` attribute.
    """
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "mixes_rows", False)
                   for m in D.modules())
