"""Pictures ganctl writes: image grids, and plots drawn with Pillow (no plotting dependency)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ganctl.files import atomic_write


def save_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def to_uint8(x: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """Model outputs in [lo, hi] -> uint8 pixels, the inverse of the dataset's normalisation."""
    lo, hi = value_range
    return ((x - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)


def grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> Image.Image:
    """uint8 N x C x H x W -> one picture, `nrow` images per row, with a dark border."""
    images = images.cpu()
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    canvas = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), 40, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        canvas[:, y : y + h, x : x + w] = images[i]
    array = canvas.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")


def scatter(
    points: np.ndarray, modes: np.ndarray, title: str = "", std: float | None = None, size: int = 480
) -> Image.Image:
    """2-D samples as a density of dots over the target's modes (red rings of 3 std, or crosses).

    The view spans the modes with a margin and widens to take in stray samples, up to three times
    the modes' extent: a diverged generator's far outliers would otherwise shrink the modes to a dot.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, :2]
    pts = pts[np.isfinite(pts).all(axis=1)]
    centres = np.asarray(modes, dtype=np.float64).reshape(-1, 2)
    extent = float(np.abs(centres).max()) if centres.size else 1.0
    half = max(extent * 1.25, extent + 0.5, 1.0)
    if pts.size:
        half = min(max(half, float(np.abs(pts).max()) * 1.05), 3 * half)
    inside = (np.abs(pts) <= half).all(axis=1)
    img = Image.new("RGB", (size, size + 20), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, top, side = 36, 20, size - 44
    to_px = lambda v: (v + half) / (2 * half) * (side - 1)  # noqa: E731

    # Dots as a density: overlapping samples darken a pixel instead of hiding one another.
    counts = np.zeros((side, side))
    if inside.any():
        cols = to_px(pts[inside, 0]).round().astype(int)
        rows = (side - 1 - to_px(pts[inside, 1])).round().astype(int)
        np.add.at(counts, (rows, cols), 1.0)
    shade = 1.0 - np.exp(-counts / 2.0)  # one sample is clearly visible, a pile saturates to black
    rgb = (255 - shade[..., None] * np.array([225, 215, 175])).clip(0, 255).astype(np.uint8)
    img.paste(Image.fromarray(rgb, mode="RGB"), (left, top))
    draw.rectangle([left - 1, top - 1, left + side, top + side], outline="black")
    for tick in np.linspace(-half, half, 5):
        x, y = left + to_px(tick), top + side - 1 - to_px(tick)
        draw.line([(x, top + side), (x, top + side + 4)], fill="black")
        draw.text((x - 10, top + side + 6), f"{tick:.3g}", fill="black", font=font)
        draw.line([(left - 4, y), (left - 1, y)], fill="black")
        draw.text((2, y - 5), f"{tick:.3g}", fill="black", font=font)
    ring = max(3.0, 3 * std / (2 * half) * side) if std else 3.0
    for cx, cy in centres:
        x, y = left + to_px(cx), top + side - 1 - to_px(cy)
        draw.ellipse([x - ring, y - ring, x + ring, y + ring], outline=(214, 39, 40), width=1)
    outside = len(pts) - int(inside.sum())
    note = f"  {outside} outside the view" if outside else ""
    draw.text((left, 4), f"{title}  {len(pts)} samples{note}  (red: modes, 3 std)".strip(), fill="black", font=font)
    return img
