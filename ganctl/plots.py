"""Plots drawn with matplotlib (Agg, no display): metric curves and contact sheets of sample grids.

Sample grids and GIFs stay pixel-exact PIL images (images.py); anything with axes, ticks and a
legend is matplotlib's job.
"""

from __future__ import annotations

import io
import textwrap
from typing import Sequence

from PIL import Image

Points = Sequence[tuple[float, float]]


def _figure(width: float, height: float):
    # A bare Figure, not pyplot: no global state, no GUI backend, safe in threads and workers.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _image(fig) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def curves(panels: dict[str, dict[str, Points]], xlabel: str = "step") -> Image.Image:
    """One panel per metric (its name is the y axis), one line per series, a legend beside each panel.

    A log scale where a metric's positive values span more than two decades; markers where a
    series has few points, so that two logged rows do not read as a trend.
    """
    fig = _figure(9, 3.0 * len(panels))
    # One step axis for all panels: a metric evaluated every K steps lines up with the losses.
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (metric, series) in zip(axes, panels.items()):
        values = [y for pts in series.values() for _, y in pts]
        for name, pts in series.items():
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, lw=1.3, label=name, marker="o" if len(pts) <= 10 else None, ms=4)
        if values and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if any(series.values()):
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[-1].set_xlabel(xlabel)
    fig.tight_layout()
    return _image(fig)


def contact_sheet(
    tiles: Sequence[tuple[str, Image.Image | None]], columns: int = 4, inches: float = 3.2
) -> Image.Image:
    """Each (label, picture) in a cell of `inches` square, the label wrapped above it."""
    n = max(1, len(tiles))
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    fig = _figure(columns * inches, rows * (inches + 0.5))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (label, picture) in zip(axes, tiles):
        if picture is not None:
            ax.imshow(picture, interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_title("\n".join(textwrap.wrap(label, 40)[:3]), fontsize=8)
    fig.tight_layout()
    return _image(fig)


def histogram(values, mean: float, std: float, title: str = "", bins: int = 50) -> Image.Image:
    """Density histogram of 1-D samples with the target N(mean, std) drawn over it."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    lo = min(mean - 4 * std, values.min() if values.size else mean)
    hi = max(mean + 4 * std, values.max() if values.size else mean)
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    ax.hist(
        values,
        bins=bins,
        range=(lo, hi),
        density=True,
        color="#78a0dc",
        edgecolor="#506eaa",
        lw=0.5,
        label=f"samples: mean {values.mean():.3f}, std {values.std():.3f}" if values.size else "no finite samples",
    )
    xs = np.linspace(lo, hi, 200)
    ax.plot(
        xs,
        np.exp(-0.5 * ((xs - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi)),
        color="#c82828",
        lw=2,
        label=f"target N({mean:g}, {std:g})",
    )
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _image(fig)
