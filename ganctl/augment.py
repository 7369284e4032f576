"""Differentiable augmentation of D's inputs (Zhao et al. 2020 "DiffAugment"; Karras et al. 2020 "ADA").

D sees real and fake batches through the same random transforms in both phases, and gradients
flow through them to G, so D cannot memorise a small training set while G is still taught to draw
un-augmented images. Each transform draws its randomness per sample from the global torch RNG of
the batch's device, so a seed (and a resumed checkpoint's RNG state) replays it exactly.

With a probability p < 1 (trainer.augment_p) each transform is applied to each sample with
probability p, as in ADA; `auto` steers p by how sure D is of the real images (`Augment.adjust`).
Which transforms leak (G learns the augmented distribution instead of the data's): see the
`AUGMENTS` comment.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _uniform(x: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    return torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(low, high)


def color(x: Tensor) -> Tensor:
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5], DiffAugment's ranges for [-1, 1] pixels."""
    x = x + (_uniform(x) - 0.5)
    if x.shape[1] > 1:  # saturation is undefined for one channel
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its side in x and y, filling with zeros (DiffAugment's 1/8)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy  # the padded row each output pixel reads
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    padded = F.pad(x, (1, 1, 1, 1))  # one ring of zeros; every out-of-image read is clamped onto it
    rows = rows.clamp(-1, h).add(1)
    cols = cols.clamp(-1, w).add(1)
    flat = (rows * (w + 2) + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` of the side at a random centre per image (DiffAugment's 1/2)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Centres anywhere on the image, so a square near the border is cut partly outside it.
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def xflip(x: Tensor) -> Tensor:
    """Mirror each image left-right with probability 1/2 (ADA's xflip)."""
    flip = torch.randint(2, (x.shape[0], 1, 1, 1), device=x.device).bool()
    return torch.where(flip, x.flip(3), x)


def quarter_turns(x: Tensor, k: Tensor) -> Tensor:
    """Each (square) image x[i] turned by k[i] quarter turns (k: N integers in 0..3); differentiable."""
    k = k.view(-1, 1, 1, 1)
    out = x
    for turns in (1, 2, 3):
        out = torch.where(k == turns, torch.rot90(x, turns, (2, 3)), out)
    return out


def rotate90(x: Tensor) -> Tensor:
    """Rotate each (square) image by 0, 90, 180 or 270 degrees, uniformly (ADA's rotate90)."""
    return quarter_turns(x, torch.randint(4, (x.shape[0], 1, 1, 1), device=x.device))


# The transforms in the order they are applied: ADA's pixel blitting (flip, rotation) first, then
# DiffAugment's order (colour, translation, cutout), which configs written before the others
# existed keep. Leaks (Karras et al. 2020, section 2.3 and figure 4): every transform here is
# applied per sample with probability p, and the augmented distribution still determines the data's
# as long as the untransformed image stays the most likely view (p < 1 for translation, colour and
# cutout, whose draws include the identity or are centred on it). Flips and 90-degree rotations are
# the exception ADA measured: at p above about 0.8 D can no longer tell which way up an image is,
# and G may learn rotated or mirrored images ("leaking"). So `auto` never lets p above
# ADA_MAX_P_LEAKY when rotate90 or xflip is chosen; translation by whole pixels is ganctl's only
# translation (DiffAugment's: integer shifts, zero fill), as ADA's `xint`, and is safe at any p < 1.
AUGMENTS: dict[str, Callable[[Tensor], Tensor]] = {
    "xflip": xflip,
    "rotate90": rotate90,
    "color": color,
    "translation": translation,
    "cutout": cutout,
}
LEAKY = ("xflip", "rotate90")

# ADA's controller (Karras et al. 2020, section 3, and stylegan2-ada-pytorch's defaults): every
# ADA_INTERVAL D updates, p moves by sign(r_t - ADA_TARGET) * (batch * ADA_INTERVAL) / ADA_SPEED_IMGS,
# where r_t = E[sign(D(real))] over those updates: 0 when D cannot tell real from fake on the real
# batch, 1 when it is sure of every real image (overfitting). ADA_TARGET = 0.6 is the paper's choice
# across dataset sizes. The paper lets p cross [0, 1] in 500k images; ganctl's CPU runs see 100k-1M
# images in all, so p moves at the rate stylegan2-ada-pytorch uses to react fast (ada_kimg=100 when
# fine-tuning): p can go from 0 to 1 in 100k images (1,560 steps of 64).
ADA_TARGET = 0.6
ADA_INTERVAL = 4
ADA_SPEED_IMGS = 100_000
ADA_MAX_P_LEAKY = 0.8


class Augment:
    """The chosen transforms (AUGMENTS' order), each applied to each sample with probability p.

    `p` is a float (a fixed trainer.augment_p), or with trainer.augment_p=auto a 0-d tensor on the
    device that `observe` and `adjust` steer without host syncs: read it once per log row.
    """

    def __init__(
        self, names: Sequence[str], p: float | str, device: torch.device, batch: int, target: float = ADA_TARGET
    ):
        self.ops = [AUGMENTS[n] for n in AUGMENTS if n in names]
        self.adaptive = p == "auto"
        self.p: float | Tensor = torch.zeros((), device=device) if self.adaptive else float(p)
        self.max_p = ADA_MAX_P_LEAKY if any(n in LEAKY for n in names) else 1.0
        self.step = batch * ADA_INTERVAL / ADA_SPEED_IMGS  # batch: the global one, over every replica
        self.signs = torch.zeros(2, device=device)  # sum of sign(D(real)), number of scores
        self.target = target

    def __call__(self, x: Tensor) -> Tensor:
        for fn in self.ops:
            if not self.adaptive and self.p == 1.0:
                x = fn(x)  # every sample: no draw for a mask, so runs from before augment_p replay
                continue
            chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
            x = torch.where(chosen, fn(x), x)
        return x

    def observe(self, real_scores: Tensor) -> None:
        """Count D's real-batch scores into this interval's r_t (device ops only)."""
        s = real_scores.detach()
        self.signs[0] += s.sign().sum()
        self.signs[1] += s.numel()  # a Python number: no tensor built and copied to the device

    def adjust(self, reduce: Callable[[Tensor], Tensor] = lambda t: t) -> None:
        """Move p one step towards r_t = target; `reduce` sums the counts over replicas."""
        signs = reduce(self.signs)
        r_t = signs[0] / signs[1].clamp(min=1)
        self.p.add_(torch.sign(r_t - self.target) * self.step).clamp_(0.0, self.max_p)
        self.signs.zero_()

    def state_dict(self) -> dict:
        return {"p": torch.as_tensor(self.p).detach().cpu(), "signs": self.signs.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.p.copy_(state["p"])
        self.signs.copy_(state["signs"])


def policy(
    names: Sequence[str],
    p: float | str = 1.0,
    device: torch.device | None = None,
    batch: int = 1,
    target: float = ADA_TARGET,
) -> Augment | None:
    """The transforms of `names` at probability `p` (a number or "auto"), or None for none."""
    if not any(n in names for n in AUGMENTS):
        return None
    return Augment(names, p, device or torch.device("cpu"), batch, target)
