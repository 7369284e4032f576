"""Pixel pictures ganctl writes with Pillow: image grids, GIFs and their frames, nearest-neighbour sheets.

Charts (anything with axes) are plots.py's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from ganctl.files import atomic_write


def save_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def save_gif(frames: Sequence[Image.Image], path: Path, duration: int | Sequence[int]) -> None:
    """An animated GIF that loops forever; `duration` in ms, one number or one per frame.

    Pillow merges identical consecutive frames into one longer frame, so a reader may count fewer
    frames than were given when some repeat.
    """
    frames = list(frames)
    atomic_write(
        path,
        lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0),
    )


def zoomed(image: Image.Image, zoom: int) -> Image.Image:
    # Nearest neighbour: 28 x 28 digits stay sharp pixels instead of a blur.
    return image if zoom == 1 else image.resize((image.width * zoom, image.height * zoom), Image.NEAREST)


CAPTION = 22  # height of the strip above each progress frame: one line of text and a progress bar


def progress_frames(pictures: Sequence[tuple[int, Image.Image]], last_step: int, width: int = 480) -> list[Image.Image]:
    """(step, picture) pairs -> equal-sized frames, each under a strip "step N / last" with a bar.

    Pictures smaller than `width` are enlarged by a whole factor (a 242-pixel MNIST grid doubles);
    pictures of different sizes (matplotlib's tight boxes vary with the tick labels) are centred on
    a white canvas of the largest size, since a GIF has one canvas size.
    """
    pictures = [(step, zoomed(p.convert("RGB"), max(1, round(width / p.width)))) for step, p in pictures]
    w = max(p.width for _, p in pictures)
    h = max(p.height for _, p in pictures)
    # Pillow's bundled vector font at 12 px: the bitmap default is 8 px, too small to read in a GIF.
    font = ImageFont.load_default(size=12)
    last_step = max(last_step, 1)
    frames = []
    for step, picture in pictures:
        frame = Image.new("RGB", (w, h + CAPTION), "white")
        frame.paste(picture, ((w - picture.width) // 2, CAPTION + (h - picture.height) // 2))
        draw = ImageDraw.Draw(frame)
        draw.text((6, 2), f"step {step:,} / {last_step:,}", fill="black", font=font)
        draw.rectangle([0, CAPTION - 5, w - 1, CAPTION - 3], fill=(225, 225, 225))
        draw.rectangle([0, CAPTION - 5, round((w - 1) * min(step / last_step, 1.0)), CAPTION - 3], fill=(31, 119, 180))
        frames.append(frame)
    return frames


NN_ZOOM, NN_PAD, NN_GAP, NN_HEADER, NN_LABEL = 3, 4, 14, 18, 14


def nn_sheet_size(rows: int, k: int, height: int, width: int) -> tuple[int, int]:
    """The (width, height) of nn_sheet's picture for `rows` samples of height x width pixels and k neighbours."""
    tile_w, tile_h = width * NN_ZOOM, height * NN_ZOOM
    return (
        NN_PAD + (k + 1) * (tile_w + NN_PAD) + NN_GAP,
        NN_HEADER + rows * (tile_h + NN_LABEL + NN_PAD),
    )


def nn_sheet(samples: torch.Tensor, neighbours: torch.Tensor, distances: torch.Tensor, title: str = "") -> Image.Image:
    """One row per sample: the sample, a gap, then its k nearest real images, each labelled with its distance.

    samples: uint8 R x C x H x W; neighbours: uint8 R x k x C x H x W; distances: R x k.
    """
    rows, k, c, h, w = neighbours.shape
    tile_w, tile_h = w * NN_ZOOM, h * NN_ZOOM
    sheet = Image.new("RGB", nn_sheet_size(rows, k, h, w), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((NN_PAD, 3), title, fill="black", font=font)

    def tile(x: torch.Tensor) -> Image.Image:
        array = x.cpu().permute(1, 2, 0).numpy()
        return zoomed(Image.fromarray(array[:, :, 0] if c == 1 else array).convert("RGB"), NN_ZOOM)

    for r in range(rows):
        top = NN_HEADER + r * (tile_h + NN_LABEL + NN_PAD)
        sheet.paste(tile(samples[r]), (NN_PAD, top))
        draw.text((NN_PAD, top + tile_h + 1), "sample", fill=(200, 30, 30), font=font)
        for j in range(k):
            left = NN_PAD + NN_GAP + (j + 1) * (tile_w + NN_PAD)
            sheet.paste(tile(neighbours[r, j]), (left, top))
            draw.text((left, top + tile_h + 1), f"L2 {float(distances[r, j]):.0f}", fill="black", font=font)
    return sheet


def to_uint8(x: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """Model outputs in [lo, hi] -> uint8 pixels, the inverse of the dataset's normalisation."""
    lo, hi = value_range
    return ((x - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)


def from_uint8(x: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """uint8 pixels -> floats in [lo, hi], the dataset's normalisation (Dataset.batch's, out of place)."""
    lo, hi = value_range
    return x.float() * ((hi - lo) / 255.0) + lo


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
