"""Plots drawn with matplotlib (Agg, no display): metric curves, contact sheets, and the pictures of
low-dimensional samples (2-D scatters over the modes, 1-D histograms, the interpolation value plot).

Sample grids and GIFs stay pixel-exact PIL images (images.py); anything with axes, ticks and a
legend is matplotlib's job. matplotlib is imported inside the functions: a command that draws no
chart never pays its import.
"""

from __future__ import annotations

import io
import textwrap
from typing import Sequence

from PIL import Image

Points = Sequence[tuple[float, float]]


def _figure(width: float, height: float):
    # A bare Figure on its own Agg canvas, not pyplot: no global state and no GUI backend, safe in
    # threads and workers, and nothing to close: the figure is freed with its last reference.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _image(fig, tight: bool = True) -> Image.Image:
    """The figure as an RGB picture; tight=False keeps the figure's own size, for frames that must match."""
    if not tight:
        # The rendered pixels directly: a PNG encode and decode nearly doubled a scatter's time
        # (median 99 against 55 ms, side by side on a shared 2-core machine).
        fig.canvas.draw()
        return Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba()).convert("RGB")
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


SAMPLE_BLUE, TARGET_RED, OUTSIDE_ORANGE = "#1f3c78", "#d62728", "#ff7f0e"
Range = tuple[float, float]


def _fixed_axes(fig, box: tuple[int, int, int, int]):
    """Axes at fixed pixel margins (left, bottom, right, top): no layout pass, the same box in every frame."""
    width, height = fig.bbox.width, fig.bbox.height
    left, bottom, right, top = box
    return fig.add_axes((left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height))


def mixture_view(modes, std: float) -> tuple[Range, Range]:
    """The square (x, y) range that shows a mixture's modes with a margin; a function of the target alone.

    Samples never widen it, so every frame of a progress GIF shares it and a diverged generator's
    outliers cannot shrink the modes to a dot.
    """
    import numpy as np

    centres = np.asarray(modes, dtype=np.float64).reshape(-1, 2)
    low, high = centres.min(axis=0), centres.max(axis=0)
    middle = (low + high) / 2
    extent = float((high - low).max()) / 2
    half = extent + max(0.25 * extent, 0.5, 6 * std)
    return (middle[0] - half, middle[0] + half), (middle[1] - half, middle[1] + half)


def scatter(
    points, modes, std: float, title: str = "", view: tuple[Range, Range] | None = None, size=(480, 500)
) -> Image.Image:
    """2-D samples as translucent dots over the mixture's modes, red rings of radius 3 std.

    `view` defaults to mixture_view(modes, std). Samples outside it sit on its edge as orange
    crosses and are counted in the title.
    """
    import numpy as np
    from matplotlib.patches import Circle

    pts = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, :2]
    pts = pts[np.isfinite(pts).all(axis=1)]
    centres = np.asarray(modes, dtype=np.float64).reshape(-1, 2)
    (x0, x1), (y0, y1) = view or mixture_view(centres, std)
    inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    fig = _figure(size[0] / 100, size[1] / 100)
    side = size[0] - 62 - 12  # a square plot area, so that the rings stay round
    ax = _fixed_axes(fig, (62, 50, 12, size[1] - 50 - side))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    # Translucent dots: where thousands pile on a mode the colour saturates, one stray dot stays visible.
    ax.plot(*pts[inside].T, ls="none", marker="o", ms=2.5, mew=0, color=SAMPLE_BLUE, alpha=0.3)
    outside = int(len(pts) - inside.sum())
    if outside:
        edge = np.stack([pts[~inside, 0].clip(x0, x1), pts[~inside, 1].clip(y0, y1)], axis=1)
        ax.plot(*edge.T, ls="none", marker="x", ms=5, mew=1.2, color=OUTSIDE_ORANGE, clip_on=False, zorder=3)
    for cx, cy in centres:
        ax.add_patch(Circle((cx, cy), 3 * std, fill=False, ec=TARGET_RED, lw=1.4, zorder=4))
    ax.set_xlabel("x", fontsize=10)
    ax.set_ylabel("y", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.25, lw=0.6)
    head = f"{title}: {len(pts):,} samples".lstrip(": ")
    if outside:
        head += f", {outside:,} beyond the edge (x)"
    # y given: matplotlib then skips measuring the axes to place the title (about a tenth of the draw).
    ax.set_title(f"{head}\nred rings: the {len(centres)} modes, radius 3 std ({3 * std:g})", fontsize=10, y=1.0)
    return _image(fig, tight=False)


def histogram(
    values, mean: float, std: float, title: str = "", bins: int = 50, view: Range | None = None, size=(600, 360)
) -> Image.Image:
    """Density histogram of 1-D samples with the target N(mean, std) drawn over it.

    `view` (default mean +- 4 std) fixes the x range and the density axis (0 to 3x the target's
    peak) so that the frames of a progress GIF compare; samples outside it are counted in the
    legend, and they count in the density, so the bars shrink rather than rescale.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    lo, hi = view or (mean - 4 * std, mean + 4 * std)
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    density = counts / (max(values.size, 1) * (edges[1] - edges[0]))
    peak = 1 / (std * np.sqrt(2 * np.pi))
    top = 3 * peak  # room for the bars of a typical GAN (up to 2-2.5x the peak), and the legend
    fig = _figure(size[0] / 100, size[1] / 100)
    ax = _fixed_axes(fig, (62, 46, 14, 30))
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, top)
    label = f"samples: mean {values.mean():.3f}, std {values.std():.3f}" if values.size else "no finite samples"
    outside = int(values.size - counts.sum())
    if outside:
        label += f"\n{outside:,} outside [{lo:.3g}, {hi:.3g}]"
    if density.max(initial=0) > top:
        label += f"\ntallest bar {density.max() / peak:.1f}x the target's peak, cut"
    ax.stairs(density.clip(max=top), edges, fill=True, color="#78a0dc", label=label)
    ax.stairs(density.clip(max=top), edges, color="#506eaa", lw=0.6)
    xs = np.linspace(lo, hi, 200)
    ax.plot(
        xs, peak * np.exp(-0.5 * ((xs - mean) / std) ** 2), color=TARGET_RED, lw=2, label=f"target N({mean:g}, {std:g})"
    )
    ax.set_xlabel("value", fontsize=10)
    ax.set_ylabel("density", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.set_title(title, fontsize=10, y=1.0)  # y given: no measuring pass to place it
    ax.legend(fontsize=8, frameon=False, loc="best")
    return _image(fig, tight=False)


def _value_figure(values, positions, mean: float, std: float, names: Sequence[str], title: str, size):
    """The value plot with its cursor (a line and a dot per curve) hidden: (figure, line, dots, xs, values)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, np.nan)  # a gap in the curve, not a line to infinity
    xs = np.asarray(positions, dtype=np.float64)
    y0, y1 = np.nanmin(v, initial=mean - std), np.nanmax(v, initial=mean + std)
    pad = 0.08 * (y1 - y0)
    names = list(names)[:11]  # four legend lines at most with the target's entry: the curves keep the room
    lines = -(-(len(names) + 1) // 3)
    fig = _figure(size[0] / 100, size[1] / 100)
    ax = _fixed_axes(fig, (62, 44, 14, 24 + 14 * lines))
    ax.set_xlim(xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1)
    ax.set_ylim(y0 - pad, y1 + pad)
    ax.axhspan(mean - std, mean + std, color=TARGET_RED, alpha=0.12, lw=0)
    ax.axhline(mean, color=TARGET_RED, lw=1.2, label=f"target N({mean:g}, {std:g}²): mean ± std")
    colours = [f"C{r % 10}" for r in range(len(v))]
    for row, colour, name in zip(v, colours, names + [None] * len(v)):
        ax.plot(xs, row, color=colour, lw=1.8, label=name)
    cursor = ax.axvline(xs[0], color="grey", lw=1, visible=False)
    dots = ax.scatter(np.full(len(v), xs[0]), v[:, 0], c=colours, s=36, edgecolors="black", zorder=3, visible=False)
    ax.set_xlabel("position along the path (point k at k)", fontsize=10)
    ax.set_ylabel("G(z)", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.25, lw=0.6)
    ax.legend(
        fontsize=8,
        ncols=3,
        frameon=False,
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        borderaxespad=0.2,
        labelspacing=0.25,
        handlelength=1.5,
        columnspacing=1.0,
        borderpad=0.1,
    )
    fig.suptitle(title, fontsize=10, x=62 / size[0], ha="left", y=1 - 4 / size[1], va="top")
    return fig, cursor, dots, xs, v


def value_plot(values, positions, mean: float, std: float, names: Sequence[str], title: str, size=(640, 360)):
    """1-D samples along latent paths: G(z) (rows of `values`) against the position, over the target's mean +- std."""
    fig, *_ = _value_figure(values, positions, mean, std, names, title, size)
    return _image(fig, tight=False)


def value_frames(values, positions, mean: float, std: float, names: Sequence[str], title: str, size=(640, 360)):
    """value_plot once per position, a cursor and a dot on each curve there: the frames of a GIF."""
    import numpy as np

    # One figure, only the cursor moves: a frame costs one render, not a new figure and its layout.
    fig, cursor, dots, xs, v = _value_figure(values, positions, mean, std, names, title, size)
    cursor.set_visible(True)
    dots.set_visible(True)
    frames = []
    for f, x in enumerate(xs):
        cursor.set_xdata([x, x])
        dots.set_offsets(np.stack([np.full(len(v), x), v[:, f]], axis=1))
        frames.append(_image(fig, tight=False))
    return frames
