"""FastGAN-style generator and discriminator (Liu et al. 2021), for 28 to 256 px images.

G: z -> ConvTranspose to a b x b map, then one up-block per doubling: 2x nearest upsample, conv3x3,
batch norm, GLU (the conv writes twice the channels and GLU gates one half by the other); every
other block (8, 32, 128 px) has a second conv, BN, GLU ("UpBlockComp"). Skip-layer excitation: the
maps at 64, 128 and 256 px are scaled channel by channel by a gate computed from the map 16x
smaller (4, 8, 16 px), a cheap long skip that carries the global layout to the fine layers.

D: a strided conv4x4 on the image, then one residual down-block per halving to the base map
(main: conv4x4 stride 2, conv3x3; skip: 2x2 average pool, conv1x1; averaged; each conv followed by
model.d_norm and LeakyReLU 0.2), then the sum over the pixels as features and a Linear score.

Left out of the paper's nets, on purpose:
- D's small reconstruction decoders and their loss: they need a loss term the shared GAN step does
  not have; spectral norm, R1 and DiffAugment are this D's regularisers instead.
- G's noise injection: G(z) would no longer be a function of z (ganctl sample and interpolate
  replay latents), and the excitation already carries the layout.
- D's skip-layer excitation and 128 px side branch: more code and compute per step on a CPU.
G keeps its batch norms (model.g_norm=batch; none drops them, layer is one GroupNorm group):
model.conditional=true turns each into a class-conditional batch norm. D's are the paper's too
(model.d_norm=batch, which puts real and fake batches through D apart); without a norm D's signal
shrinks block by block and D falls to chance at 64 px (conf/model/fastgan.yaml has the numbers);
d_norm=layer keeps images apart.
"""

from __future__ import annotations

import torch
from torch import nn

from ganctl import models
from ganctl.config import ModelConfig
from ganctl.models.dcgan import base_size

MAX_MULT = 16  # FastGAN's widest map (4x4) has 16x the channels of its 64 px map


def _widths(width: int, ups: int) -> list[int]:
    """Channels at each resolution from the base (ups doublings below the image) to the image."""
    return [width * min(2**i, MAX_MULT) for i in reversed(range(ups + 1))]


def _conv_bn_glu(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, 2 * c_out, 3, 1, 1, bias=norm == "none")  # a norm's shift makes the bias redundant
    return [conv, *models.conv_norm(norm, 2 * c_out), nn.GLU(dim=1)]


class UpBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, comp: bool, norm: str):
        layers = [nn.Upsample(scale_factor=2.0, mode="nearest"), *_conv_bn_glu(c_in, c_out, norm)]
        super().__init__(*(layers + (_conv_bn_glu(c_out, c_out, norm) if comp else [])))


class Excitation(nn.Module):
    """Skip-layer excitation: a per-channel gate in (0, 1) for the big map from the small map."""

    def __init__(self, c_small: int, c_big: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(c_small, c_big, 4, 1, 0, bias=False),
            nn.SiLU(),  # the paper's Swish
            nn.Conv2d(c_big, c_big, 1, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.gate(small)


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig, out_shape: tuple[int, ...]):
        super().__init__()
        channels, size = out_shape[0], out_shape[1]
        base, ups = base_size(size, "fastgan")
        widths, norm = _widths(cfg.width, ups), cfg.g_norm
        self.init = nn.Sequential(
            nn.ConvTranspose2d(cfg.z_dim, 2 * widths[0], base, 1, 0, bias=norm == "none"),
            *models.conv_norm(norm, 2 * widths[0]),
            nn.GLU(dim=1),
        )
        # The paper's blocks at 8, 32, 128 px are the two-conv kind: the odd doublings here.
        self.ups = nn.ModuleList(
            UpBlock(a, b, comp=i % 2 == 0, norm=norm) for i, (a, b) in enumerate(zip(widths, widths[1:]))
        )
        # Excitation into the map after doubling i + 1 from the map four doublings smaller, at 64 px and up.
        self.excite = nn.ModuleDict(
            {str(i): Excitation(widths[i - 4], widths[i]) for i in range(4, ups + 1) if base * 2**i >= 64}
        )
        self.to_image = nn.Sequential(nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        maps = [self.init(z.view(z.shape[0], -1, 1, 1))]
        for i, up in enumerate(self.ups, start=1):
            h = up(maps[-1])
            if str(i) in self.excite:
                h = self.excite[str(i)](maps[i - 4], h)
            maps.append(h)
        return self.to_image(maps[-1])


def _conv_norm_act(conv: nn.Conv2d, norm: str) -> list[nn.Module]:
    return [conv, *models.conv_norm(norm, conv.out_channels), nn.LeakyReLU(0.2)]


class DownBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: str = "none"):
        super().__init__()
        bias = norm == "none"  # a norm's shift replaces the conv's bias, as in the paper
        self.main = nn.Sequential(
            *_conv_norm_act(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias), norm),
            *_conv_norm_act(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias), norm),
        )
        self.skip = nn.Sequential(nn.AvgPool2d(2), *_conv_norm_act(nn.Conv2d(c_in, c_out, 1, bias=bias), norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.skip(x)) / 2


class SumPool(nn.Module):
    """N x C x H x W -> N x C: the sum over the pixels (SNGAN's global sum pooling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(2, 3))


class Discriminator(nn.Module):
    """`features` (N x C) and `head` (Linear C -> 1), the split ProjectionDiscriminator uses."""

    def __init__(self, cfg: ModelConfig, in_shape: tuple[int, ...]):
        super().__init__()
        _, ups = base_size(in_shape[1], "fastgan")
        widths = list(reversed(_widths(cfg.width, ups)))[1:]  # after each halving, image side first
        layers: list[nn.Module] = [nn.Conv2d(in_shape[0], widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        layers += [DownBlock(a, b, cfg.d_norm) for a, b in zip(widths, widths[1:])]
        self.features = nn.Sequential(*layers, SumPool())
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def build(cfg: ModelConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ValueError(f"fastgan needs square C x H x W images, got shape {data_shape}")
    return Generator(cfg, data_shape), Discriminator(cfg, data_shape)
