"""ganctl inspect: what a checkpoint holds, in one screen (or as JSON for scripts)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict

from ganctl.commands import options
from ganctl.config import RunConfig, flatten, to_run_config
from ganctl.errors import ArgumentParser, CheckpointError
from ganctl.runfolder import RunFolder
from ganctl.training import checkpoint, fast_paths


def _command(run: RunFolder) -> str | None:
    """The overrides the run was started with, as a command line."""
    overrides = run.overrides()
    return None if overrides is None else "ganctl train " + " ".join(overrides)


def describe(target: str) -> dict:
    """Everything `ganctl inspect` shows, as plain data."""
    path = checkpoint.resolve_path(target)
    ckpt = checkpoint.load(path)
    try:
        cfg = to_run_config(ckpt["config"])
    except Exception as exc:  # OmegaConf raises several types for a config it cannot merge
        raise CheckpointError(f"{path}: its config does not fit this ganctl's schema ({exc})") from None
    run = RunFolder.of_checkpoint(path)
    defaults, values = flatten(asdict(RunConfig())), flatten(asdict(cfg))
    params = {net: sum(t.numel() for t in ckpt[net].values()) for net in ("G", "D")}
    return {
        "path": str(path),
        "ganctl_version": ckpt.get("ganctl_version"),
        "format_version": ckpt.get("format_version"),
        "step": ckpt.get("step"),
        "epoch": ckpt.get("epoch"),
        "command": _command(run),
        "dataset": f"{cfg.dataset.name} ({cfg.dataset.split})",
        "data_shape": ckpt.get("data_shape"),
        "model": cfg.model.arch,
        "loss": cfg.loss.name,
        "parameters": params,
        "ema": ckpt.get("G_ema") is not None,
        "labels": ckpt.get("classes"),  # a conditional run's class names
        "changed": {k: v for k, v in values.items() if v != defaults.get(k)},
        "last_metrics": run.last_row(),
        "best_metric": ckpt.get("best_metric"),
        "fast_path": ckpt.get("fast_path"),  # the step, memory format, precision and threads it trained with
    }


def _fast_path(pick: dict) -> str:
    fields = {f.name for f in dataclasses.fields(fast_paths.Paths)}
    paths = fast_paths.Paths(**{k: v for k, v in pick.items() if k in fields})
    return f"  fast path: {paths} (picked on {pick.get('device', 'an unrecorded device')})"


def render(info: dict) -> str:
    lines = [
        f"{info['path']}",
        f"  written by ganctl {info['ganctl_version']} (checkpoint format {info['format_version']})",
        f"  step {info['step']}, epoch {info['epoch']:.2f}" if info["epoch"] is not None else f"  step {info['step']}",
    ]
    if info["command"]:
        lines.append(f"  command: {info['command']}")
    p = info["parameters"]
    lines += [
        f"  data: {info['dataset']}, samples of shape {tuple(info['data_shape'] or ())}",
        f"  model: {info['model']}, loss {info['loss']}; parameters G {p['G']:,}, D {p['D']:,}",
        f"  EMA generator: {'yes' if info['ema'] else 'no'}; class labels: "
        + (", ".join(map(str, info["labels"])) if info["labels"] else "none"),
    ]
    if info["fast_path"]:
        lines.append(_fast_path(info["fast_path"]))
    lines.append("  config values that differ from the schema's defaults:")
    lines += [f"    {k} = {v!r}" for k, v in info["changed"].items()] or ["    (none)"]
    if info["last_metrics"]:
        row = info["last_metrics"]
        shown = {k: v for k, v in row.items() if v not in ("", None) and k not in ("time",)}
        lines.append("  last metrics row: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    if info["best_metric"] is not None:
        lines.append(f"  best evaluation: {info['best_metric']:.4g} (checkpoints/best.pt)")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="ganctl inspect", description="Show what a checkpoint holds.")
    options.add_checkpoint(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    info = describe(args.checkpoint)
    print(json.dumps(info, indent=1, default=str) if args.json else render(info))
