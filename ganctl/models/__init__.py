"""Model families by name and their shared building blocks (activations, norms, initialisations)."""

from __future__ import annotations

import math
from typing import Callable

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


def build_models(cfg: ModelConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of family `cfg.arch` for samples of `data_shape`."""
    G, D = MODELS[cfg.arch](cfg, data_shape)
    init = INITS[cfg.init]
    if init is not None:
        G.apply(init)
        D.apply(init)
    return G, D


# Imported last: the families use the blocks above.
from ganctl.models import dcgan, mlp  # noqa: E402

MODELS: dict[str, Callable[[ModelConfig, tuple[int, ...]], tuple[nn.Module, nn.Module]]] = {
    "mlp": mlp.build,
    "dcgan": dcgan.build,
}


def rows_independent(D: nn.Module) -> bool:
    """Whether D scores each row on its own, so that D(cat(a, b)) == cat(D(a), D(b)).

    Batch norm in training mode and setup 002's batch-moment features both mix the rows; a
    module says it does with a `mixes_rows = True` attribute.
    """
    return not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "mixes_rows", False) for m in D.modules()
    )
