"""Sweep reports: summary.csv / summary.md after every multirun, and `ganctl report SWEEP_DIR`."""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from PIL import Image

from ganctl import images, plots
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.files import atomic_write

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
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ""
    lines = [ln.strip()[2:] for ln in path.read_text().splitlines() if ln.strip().startswith("- ")]
    return " ".join(lines)


def _metrics(job_dir: Path) -> list[dict]:
    path = job_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def job_row(job_dir: Path) -> dict:
    """One job's line: overrides, status, final losses, speed, metric and last checkpoint."""
    rows = _metrics(job_dir)
    last = rows[-1] if rows else {}
    error_file = job_dir / "error.txt"
    ckpt = job_dir / "checkpoints" / "last.pt"
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
        grids = sorted((sweep_dir / r["job"] / "samples").glob("step_*.png"))
        status = r["status"] + (f": {r['error']}" if r["error"] else "")
        tiles.append((f"{names[r['job']]} ({status})", Image.open(grids[-1]).convert("RGB") if grids else None))
    return plots.contact_sheet(tiles)


def curves(sweep_dir: Path, rows: list[dict]) -> Image.Image:
    """d_loss and g_loss against step for every job, on shared axes (one panel per loss)."""
    names, panels = labels(rows), {}
    for loss in ("d_loss", "g_loss"):
        series = {}
        for r in sorted(rows, key=lambda r: int(r["job"])):
            points = [(_float(m.get("step")), _float(m.get(loss))) for m in _metrics(sweep_dir / r["job"])]
            series[names[r["job"]]] = [(x, y) for x, y in points if x is not None and y is not None]
        panels[loss] = series
    return plots.curves(panels)


def report(sweep_dir: Path) -> list[dict]:
    rows = summarise(sweep_dir)
    images.save_png(contact_sheet(sweep_dir, rows), sweep_dir / "contact_sheet.png")
    images.save_png(curves(sweep_dir, rows), sweep_dir / "curves.png")
    return rows


def main(argv: list[str]) -> None:

    parser = ArgumentParser(prog="ganctl report", description="Summarise a sweep folder (multirun/DATE/TIME).")
    parser.add_argument("sweep_dir", help="a multirun folder holding job folders 0/, 1/, ...")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir() or not job_dirs(sweep_dir):
        raise ConfigError(
            f"{sweep_dir} is not a sweep folder (no job folders 0/, 1/, ...); accepted: a multirun/DATE/TIME folder"
        )
    rows = report(sweep_dir)
    ok = sum(r["status"] == "ok" for r in rows)
    print(
        f"ganctl: {len(rows)} jobs, {ok} finished; wrote summary.csv, summary.md, contact_sheet.png, "
        f"curves.png in {sweep_dir}"
    )
