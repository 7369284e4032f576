"""Reports: a run's pictures (curves.png, samples/progress.gif) at the end of every run and by
`ganctl report RUN`; a sweep's summary.csv / summary.md after every multirun and by `ganctl report SWEEP_DIR`."""

from __future__ import annotations

import csv
import io
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from ganctl import images, plots
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.files import atomic_write
from ganctl.runfolder import RunFolder

FIELDS = [
    "job",
    "overrides",
    "status",
    "steps",
    "d_loss",
    "g_loss",
    "steps_per_s",
    "metric",
    "metric_value",
    "last_checkpoint",
    "error",
]


def _overrides(job_dir: Path) -> str:
    return " ".join(RunFolder(job_dir).overrides() or [])


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def job_row(job_dir: Path) -> dict:
    """One job's line: overrides, status, final losses, speed, metric and last checkpoint."""
    run = RunFolder(job_dir)
    rows = run.metrics_rows()
    last = rows[-1] if rows else {}
    error_file, ckpt = run.error, run.last
    speeds = [v for v in (_float(r.get("steps_per_s")) for r in rows[1:] or rows) if v is not None]
    metric, value = None, None
    for name in ("fd", "w1"):  # the evaluation's headline metric, when the run logged one
        if last.get(name) not in (None, ""):
            metric, value = name, _float(last[name])
            break
    if error_file.is_file():
        status = "error"
    elif ckpt.is_file():
        status = "ok"
    else:
        status = "running" if rows else "pending"
    return {
        "job": job_dir.name,
        "overrides": _overrides(job_dir),
        "status": status,
        "steps": last.get("step", ""),
        "d_loss": _float(last.get("d_loss")),
        "g_loss": _float(last.get("g_loss")),
        "steps_per_s": round(statistics.median(speeds), 2) if speeds else None,
        "metric": metric,
        "metric_value": value,
        "last_checkpoint": str(ckpt) if ckpt.is_file() else "",
        "error": error_file.read_text().strip().replace("\n", " ") if status == "error" else "",
    }


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def summarise(sweep_dir: Path) -> list[dict]:
    """Write summary.csv and summary.md for a sweep folder; rows sorted by metric, then job."""
    sweep_dir = Path(sweep_dir)
    rows = [job_row(d) for d in job_dirs(sweep_dir)]
    rows.sort(
        key=lambda r: (
            r["status"] != "ok",
            r["metric_value"] is None,
            r["metric_value"] if r["metric_value"] is not None else 0.0,
            int(r["job"]),
        )
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(sweep_dir / "summary.csv", lambda f: f.write(buffer.getvalue().encode()))
    fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    md = [
        "| job | overrides | status | steps | d_loss | g_loss | steps/s | metric | last checkpoint / error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        metric = f"{r['metric']} {fmt(r['metric_value'])}" if r["metric"] else ""
        tail = r["error"] or r["last_checkpoint"]
        md.append(
            f"| {r['job']} | `{r['overrides']}` | {r['status']} | {r['steps']} | {fmt(r['d_loss'])} | "
            f"{fmt(r['g_loss'])} | {fmt(r['steps_per_s'])} | {metric} | {tail} |"
        )
    atomic_write(sweep_dir / "summary.md", lambda f: f.write(("\n".join(md) + "\n").encode()))
    return rows


def labels(rows: list[dict]) -> dict[str, str]:
    """Per job, only the overrides that differ between jobs: what the sweep varied."""
    tokens = {r["job"]: r["overrides"].split() for r in rows}
    common = set.intersection(*(set(t) for t in tokens.values())) if tokens else set()
    return {job: f"{job}: " + " ".join(t for t in toks if t not in common) for job, toks in tokens.items()}


def contact_sheet(sweep_dir: Path, rows: list[dict]) -> Image.Image:
    """Every job's newest sample picture, labelled with what the sweep varied and its status."""
    names, tiles = labels(rows), []
    for r in sorted(rows, key=lambda r: int(r["job"])):
        grids = [path for _, path in RunFolder(sweep_dir / r["job"]).sample_pictures()]
        status = r["status"] + (f": {r['error']}" if r["error"] else "")
        tiles.append((f"{names[r['job']]} ({status})", Image.open(grids[-1]).convert("RGB") if grids else None))
    return plots.contact_sheet(tiles)


def curves(sweep_dir: Path, rows: list[dict]) -> Image.Image:
    """d_loss and g_loss against step for every job, on shared axes (one panel per loss)."""
    names, panels = labels(rows), {}
    for loss in ("d_loss", "g_loss"):
        series = {}
        for r in sorted(rows, key=lambda r: int(r["job"])):
            points = [
                (_float(m.get("step")), _float(m.get(loss))) for m in RunFolder(sweep_dir / r["job"]).metrics_rows()
            ]
            series[names[r["job"]]] = [(x, y) for x, y in points if x is not None and y is not None]
        panels[loss] = series
    return plots.curves(panels)


# A run's curves: one panel per picture a reader compares, metrics.csv's columns as the series.
RUN_PANELS = {
    "loss": {"d_loss": "D loss (d_loss)", "g_loss": "G loss (g_loss)"},
    "D(x) and D(G(z))": {"d_real": "D(x), real (d_real)", "d_fake": "D(G(z)), fake (d_fake)"},
    "augmentation": {"augment_p": "probability of each transform (augment_p)"},
    "fd": {"fd": "Frechet distance (fd)"},
    "kid": {"kid": "kernel distance, unbiased (kid)"},
    "w1": {"w1": "Wasserstein-1 to the target (w1)"},
}
MAX_FRAMES = 100  # a long run's GIF keeps an even spread of its pictures, the first and the last


def run_curves(run_dir: Path) -> Image.Image | None:
    """A run's losses, D(x) and D(G(z)), and its evaluation metric when it logged one, against step."""
    rows = RunFolder(run_dir).metrics_rows()
    panels = {}
    for panel, columns in RUN_PANELS.items():
        series = {}
        for column, name in columns.items():
            points = [(_float(m.get("step")), _float(m.get(column))) for m in rows]
            points = [(x, y) for x, y in points if x is not None and y is not None]
            if points:
                series[name] = points
        if series:
            panels[panel] = series
    return plots.curves(panels) if panels else None


def progress_gif(run_dir: Path) -> Path | None:
    """Write samples/progress.gif: the fixed-latent pictures in step order, one frame each (None: no pictures)."""
    run = RunFolder(run_dir)
    pictures = run.sample_pictures()
    if not pictures:
        return None
    if len(pictures) > MAX_FRAMES:
        keep = sorted({round(i * (len(pictures) - 1) / (MAX_FRAMES - 1)) for i in range(MAX_FRAMES)})
        pictures = [pictures[i] for i in keep]
    loaded = []
    for step, path in pictures:
        with Image.open(path) as picture:
            loaded.append((step, picture.convert("RGB")))
    frames = images.progress_frames(loaded, last_step=pictures[-1][0])
    # About 6 s for the whole loop, 0.1-0.5 s a frame; the last picture stays 2 s before it restarts.
    each = max(100, min(500, 6000 // len(frames)))
    out = run.progress_gif
    images.save_gif(frames, out, [each] * (len(frames) - 1) + [2000])
    return out


def run_pictures(run_dir: Path) -> list[str]:
    """Write RUN/curves.png and RUN/samples/progress.gif from what the run logged; returns what it wrote."""
    run_dir = Path(run_dir)
    written = []
    picture = run_curves(run_dir)
    if picture is not None:
        images.save_png(picture, RunFolder(run_dir).curves)
        written.append("curves.png")
    if progress_gif(run_dir) is not None:
        written.append("samples/progress.gif")
    return written


def end_of_run(run_dir: Path) -> None:
    """run_pictures at the end of training: the checkpoint is written by then, so a failure to draw
    warns and never fails the run."""
    try:
        run_pictures(run_dir)
    except Exception as exc:  # a plotting bug or a full disk must not turn a trained run into an error
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        print(
            f"ganctl: warning: could not draw curves.png or samples/progress.gif ({reason}); the run is "
            f"saved, and ganctl report {run_dir} draws them again",
            file=sys.stderr,
        )


def report(sweep_dir: Path) -> list[dict]:
    rows = summarise(sweep_dir)
    images.save_png(contact_sheet(sweep_dir, rows), sweep_dir / "contact_sheet.png")
    images.save_png(curves(sweep_dir, rows), sweep_dir / "curves.png")
    return rows


def main(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="ganctl report",
        description="Draw a run's curves.png and samples/progress.gif, or summarise a sweep folder "
        "(multirun/DATE/TIME).",
    )
    parser.add_argument(
        "folder", help="a run folder (outputs/DATE/TIME), or a multirun folder holding job folders 0/, 1/, ..."
    )
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if folder.is_dir() and job_dirs(folder):
        rows = report(folder)
        ok = sum(r["status"] == "ok" for r in rows)
        print(
            f"ganctl: {len(rows)} jobs, {ok} finished; wrote summary.csv, summary.md, contact_sheet.png, "
            f"curves.png in {folder}"
        )
        return
    if not folder.is_dir() or not RunFolder(folder).holds_run():
        raise ConfigError(
            f"{folder} is not a sweep folder (no job folders 0/, 1/, ...) nor a run folder (no metrics.csv "
            "or samples/step_N.png); accepted: a run folder outputs/DATE/TIME or a multirun/DATE/TIME folder"
        )
    written = run_pictures(folder)
    if written:
        print(f"ganctl: wrote {', '.join(written)} in {folder}")
    else:
        print(f"ganctl: {folder} has logged no metrics row and no sample picture yet; nothing to draw")
