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


def histogram(values: np.ndarray, mean: float, std: float, title: str = "",
              size: tuple[int, int] = (480, 320), bins: int = 50) -> Image.Image:
    """Histogram of 1-D samples (density) with the target N(mean, std) drawn over it."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    lo = min(mean - 4 * std, values.min() if values.size else mean)
    hi = max(mean + 4 * std, values.max() if values.size else mean)
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi), density=True)
    xs = np.linspace(lo, hi, 200)
    target = np.exp(-0.5 * ((xs - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    ymax = max(counts.max() if counts.size else 0.0, target.max()) * 1.1
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 40, size[0] - 10, 24, size[1] - 28
    to_x = lambda v: left + (v - lo) / (hi - lo) * (right - left)  # noqa: E731
    to_y = lambda d: bottom - d / ymax * (bottom - top)  # noqa: E731
    for count, a, b in zip(counts, edges[:-1], edges[1:]):
        draw.rectangle([to_x(a), to_y(count), to_x(b), bottom], fill=(120, 160, 220), outline=(80, 110, 170))
    draw.line([(to_x(x), to_y(d)) for x, d in zip(xs, target)], fill=(200, 40, 40), width=2)
    draw.line([(left, bottom), (right, bottom)], fill="black")
    draw.line([(left, top), (left, bottom)], fill="black")
    for tick in np.linspace(lo, hi, 6):
        draw.line([(to_x(tick), bottom), (to_x(tick), bottom + 4)], fill="black")
        draw.text((to_x(tick) - 10, bottom + 6), f"{tick:.1f}", fill="black", font=font)
    stats = f"mean {values.mean():.3f}  std {values.std():.3f}" if values.size else "no finite samples"
    draw.text((left, 4), f"{title}  {stats}  (red: target N({mean:g}, {std:g}))".strip(), fill="black", font=font)
    return img


def line_plot(series: dict[str, Sequence[tuple[float, float]]], title: str = "",
              size: tuple[int, int] = (640, 360)) -> Image.Image:
    """Several (x, y) curves on shared axes with a legend."""
    palette = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
               (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    points = [p for s in series.values() for p in s if all(map(math.isfinite, p))]
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 50, size[0] - 10, 24, size[1] - 28
    draw.text((left, 4), title, fill="black", font=font)
    if not points:
        return img
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    to_xy = lambda p: (left + (p[0] - x0) / (x1 - x0) * (right - left),  # noqa: E731
                       bottom - (p[1] - y0) / (y1 - y0) * (bottom - top))
    draw.rectangle([left, top, right, bottom], outline="black")
    for frac in np.linspace(0, 1, 5):
        y = y0 + frac * (y1 - y0)
        draw.text((2, to_xy((x0, y))[1] - 5), f"{y:.3g}", fill="black", font=font)
        x = x0 + frac * (x1 - x0)
        draw.text((to_xy((x, y0))[0] - 10, bottom + 6), f"{x:.4g}", fill="black", font=font)
    for i, (name, s) in enumerate(series.items()):
        colour = palette[i % len(palette)]
        pts = [to_xy(p) for p in s if all(map(math.isfinite, p))]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        draw.text((right - 160, top + 4 + 12 * i), name[:28], fill=colour, font=font)
    return img
