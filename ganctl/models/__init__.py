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


def conv_norm(kind: str, channels: int) -> list[nn.Module]:
    """The normalisation `kind` (model.g_norm/d_norm) after a conv: none, batch, or one group = layer
    norm over (C, H, W), the critic norm WGAN-GP suggests; a list to splice into a Sequential."""
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "layer":
        return [nn.GroupNorm(1, channels)]
    return []


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


def build_models(cfg: ModelConfig, data_shape: tuple[int, ...], n_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of family `cfg.arch` for samples of `data_shape`; with
    model.conditional, G(z, y) and D(x, y) for labels y in 0..n_classes-1."""
    G, D = MODELS[cfg.arch](cfg, data_shape)
    if cfg.conditional:
        if n_classes < 1:
            raise ValueError("a conditional model needs the number of classes")
        G = conditional.ConditionalGenerator(lambda c: MODELS[cfg.arch](c, data_shape)[0], cfg, n_classes)
        D = conditional.ProjectionDiscriminator(D, n_classes)
    init = INITS[cfg.init]
    if init is not None:
        G.apply(init)
        D.apply(init)
    if cfg.d_spectral_norm:
        spectral_norm(D)
    return G, D


def spectral_norm(module: nn.Module) -> nn.Module:
    """Every Linear, Conv and Embedding weight of `module` divided by its largest singular value,
    estimated by one power iteration per training forward (Miyato et al. 2018). Applied after the
    initialisation, which then only sets the direction of each weight."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)):
            nn.utils.parametrizations.spectral_norm(m)
    return module


# Imported last: the families use the blocks above.
from ganctl.models import conditional, dcgan, fastgan, mlp  # noqa: E402

MODELS: dict[str, Callable[[ModelConfig, tuple[int, ...]], tuple[nn.Module, nn.Module]]] = {
    "mlp": mlp.build,
    "dcgan": dcgan.build,
    "fastgan": fastgan.build,
}
IMAGE_MODELS = ("dcgan", "fastgan")  # the convolutional families: images only


def image_side_problem(arch: str, side: int) -> str | None:
    """What family `arch` accepts as an image side, when it cannot draw side x side images; else None."""
    try:
        base, _ = dcgan.base_size(side, arch)
    except ValueError:
        base = 0
    if arch == "dcgan" and base == 0:
        return "an even image side of at least 8, e.g. 28, 32, 64 (model.arch=dcgan)"
    # FastGAN's first map is its ConvTranspose kernel and its excitation gates pool to 4x4.
    if arch == "fastgan" and not 4 <= base <= 7:
        return "a side of 4-7 px times a power of two, e.g. 28, 32, 64, 128, 256 (model.arch=fastgan)"
    return None


def rows_independent(D: nn.Module) -> bool:
    """Whether D scores each row on its own, so that D(cat(a, b)) == cat(D(a), D(b)).

    Batch norm in training mode and setup 002's batch-moment features both mix the rows; a
    module says it does with a `mixes_rows = True` attribute.
    """
    return not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "mixes_rows", False) for m in D.modules()
    )
