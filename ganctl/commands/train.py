"""ganctl train: run(cfg, run_dir), the training loop. Imports no Hydra.

Read top to bottom: build the parts (ganctl.training.build), then one loop of D phase, G phase,
EMA, log row, sample grid, checkpoint, stop. The GAN step object owns the phases.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ganctl import images, kinds
from ganctl.commands.report import end_of_run
from ganctl.config import RunConfig
from ganctl.data import read_once
from ganctl.errors import ConfigError, Diverged, Interrupted
from ganctl.files import atomic_write, refused
from ganctl.generation import class_columns, generate
from ganctl.runfolder import RunFolder
from ganctl.training import checkpoint, distributed, fast_paths
from ganctl.training.build import Run, build
from ganctl.training.runlog import PendingStats, RunLog, metric_fields
from ganctl.training.signals import StopRequest
from ganctl.training.step import StepStats
from ganctl.training.validate import training_device, validate


def run(cfg: RunConfig, run_dir: Path, resume: dict | None = None, checked: bool = False) -> dict:
    """Train one GAN as `cfg` says; everything it writes goes under `run_dir`.

    `resume` is a loaded checkpoint: training continues from its step with every state restored
    (weights, optimisers, RNGs, data order), so N + N steps equal 2N steps straight, bit for bit.
    With trainer.devices=N > 1 this spawns N data-parallel processes; under torchrun it joins
    the process group torchrun set up. `checked`: the caller validated `cfg` already (the launch
    does, before it claims the run folder), so it is not validated twice.
    """
    if not checked:
        validate(cfg)
    uses_cuda = training_device(cfg).type == "cuda"
    env_rank = distributed.from_env(uses_cuda)
    if env_rank is None and cfg.trainer.devices > 1:
        if uses_cuda and cfg.trainer.devices > torch.cuda.device_count():
            raise ConfigError(
                f"trainer.devices={cfg.trainer.devices} but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s); accepted: 1..{torch.cuda.device_count()}"
            )
        return distributed.spawn(run_rank, cfg.trainer.devices, uses_cuda, cfg, str(run_dir), resume)
    # trainer.threads may set the run's thread count: a notebook gets its own back afterwards.
    with read_once(), fast_paths.threads_kept():  # read_once: the size check and the load share one scan
        return run_rank(env_rank or distributed.Rank(), cfg, run_dir, resume)


def save_samples(r: Run, cfg: RunConfig, path: Path, log: RunLog | None = None) -> None:
    """The fixed-latent picture, as the dataset's kind draws it (kinds.py): a grid of images (a
    conditional G's classes each in whole rows), a histogram, or a scatter over the modes."""
    fake = generate(r.state.G_sample, r.state.fixed_z, labels=r.state.fixed_y)
    kind = kinds.of(cfg.dataset)
    nrow = class_columns(len(fake), len(r.state.classes)) if r.state.fixed_y is not None else None
    picture = kind.picture(fake, cfg.dataset, f"step {r.state.step}", nrow=nrow)
    images.save_png(picture, path)
    if log is not None:
        log.picture(picture, r.state.step, values=kind.log_values(fake))


def check_finite(stats: StepStats, r: Run, since: int, last_good: int | None) -> None:
    """Stop at the first non-finite loss or weights, naming the last good checkpoint."""
    named = {
        "d_loss": torch.tensor(stats.d_loss),
        "g_loss": torch.tensor(stats.g_loss),
        "generator weights": torch.stack([p.detach().sum() for p in r.state.G.parameters()]),
        "discriminator weights": torch.stack([p.detach().sum() for p in r.state.D.parameters()]),
    }
    bad = next((name for name, value in named.items() if not torch.isfinite(value).all()), None)
    if bad is not None:
        where = f"checkpoints/step_{last_good:06d}.pt" if last_good else "none written yet"
        raise Diverged(
            f"{bad} became non-finite between steps {since} and {r.state.step}; stopped. "
            f"Last good checkpoint: {where}. Lower optim.lr or set trainer.on_nan=skip"
        )


def log_row(
    r: Run, cfg: RunConfig, stats: StepStats, rate: float, elapsed: float, nan_skips: int, run: RunFolder
) -> tuple[dict, dict]:
    """metrics.csv's row and the progress bar's postfix; evaluates and keeps best.pt when due."""
    s = r.state
    row = {
        "step": s.step,
        "epoch": round(s.sampler.epoch, 4),
        "d_loss": stats.d_loss,
        "g_loss": stats.g_loss,
        "d_real": stats.d_real,
        "d_fake": stats.d_fake,
        "grad_norm": stats.grad_norm,
        "nan_skips": nan_skips,
        "augment_p": s.augment_p,
        "time": round(elapsed, 3),
        "steps_per_s": round(rate, 2),
    }
    kind = kinds.of(cfg.dataset)
    if kind.row_fields and r.gan.rank.is_main:
        row.update(kind.row_values(generate(s.G_sample, s.fixed_z)))
    postfix = {
        "d_loss": f"{row['d_loss']:.3f}",
        "g_loss": f"{row['g_loss']:.3f}",
        "D(x)": f"{row['d_real']:.2f}",
        "D(G(z))": f"{row['d_fake']:.2f}",
    }
    ev = r.evaluator
    if ev is not None and (s.step % cfg.trainer.eval_every == 0 or s.step == r.steps):
        scores = ev(s.G_sample)
        row.update(scores)
        postfix[ev.metric] = f"{scores[ev.metric]:.3g}"
        if s.best is None or scores[ev.metric] < s.best:
            s.best = scores[ev.metric]
            checkpoint.save(run.best, s.state_dict())
    return row, postfix


def run_rank(rank: distributed.Rank, cfg: RunConfig, run_dir: Path | str, resume: dict | None = None) -> dict:
    """One replica's training loop; rank 0 alone writes files and shows the progress bar."""
    t, run_dir = cfg.trainer, Path(run_dir)
    r = build(cfg, rank, resume)
    s, gan = r.state, r.gan
    run = make_folders(run_dir, rank)
    if t.minutes is not None and resume is None and rank.is_main:
        record_length(run, cfg)
    fields = metric_fields(cfg, r.evaluator.fields if r.evaluator else [])
    log = RunLog(run_dir, fields, r.steps, s.step, resume is not None, rank, t.progress, cfg)
    pending, row = PendingStats(), {}
    first_step, last_log_step, last_good = s.step, s.step, (s.step if resume else None)
    nan_skips = skips_in_row = 0
    start = last_log_time = time.perf_counter()
    with StopRequest() as stop:
        while s.step < r.steps:
            r.schedule.apply(s.step)
            # D phase: d_steps updates, each on a fresh real batch and a fresh, detached fake batch.
            d_stats = []
            for i in range(t.d_steps):
                real, idx = r.data.next_batch(s.sampler)
                labels = r.data.batch_labels(idx) if gan.n_classes else None
                d_stats.append(gan.d_phase(real, labels, last=i == t.d_steps - 1))
            # G phase: g_steps updates, each through the just-updated D with fresh latents.
            g_losses = []
            for _ in range(t.g_steps):
                g_losses.append(gan.g_phase())
                if g_losses[-1] is not None and s.ema is not None:
                    s.ema.update(s.G)
            s.step += 1
            log.bar.update(1)
            if any(x is None for x in d_stats + g_losses):  # trainer.on_nan=skip dropped an update
                nan_skips, skips_in_row = nan_skips + 1, skips_in_row + 1
                if skips_in_row >= t.max_nan_skips:
                    raise Diverged(
                        f"{skips_in_row} steps in a row had a non-finite loss (up to step {s.step}); "
                        f"stopped, last good checkpoint: {last_good}; lower optim.lr"
                    )
                continue
            skips_in_row = 0
            pending.add(d_stats[-1], g_losses[-1])
            logging = s.step % t.log_every == 0 or s.step == r.steps
            if logging:
                stats = pending.reduce(gan.summarise, rank, r.device)
                check_finite(stats, r, last_log_step, last_good)
                if t.check_replicas and not rank.replicas_agree([s.G, s.D], r.device):
                    raise Diverged(
                        f"replicas hold different weights at step {s.step}; "
                        "this is a bug in data-parallel training, please report it"
                    )
                now = time.perf_counter()
                with fast_paths.at_threads(r.process_threads):  # its evaluation, on the process's count
                    row, postfix = log_row(
                        r, cfg, stats, (s.step - last_log_step) / (now - last_log_time), now - start, nan_skips, run
                    )
                log.write(row, postfix)
                last_log_step, last_log_time = s.step, now
            # Replicas agree on stopping at log steps: one small all-reduce there, no per-step sync.
            stop_signal = stop.signum if rank.world == 1 else (rank.any(stop.signum or 0, r.device) if logging else 0)
            if rank.is_main and (s.step % t.sample_every == 0 or s.step == r.steps):
                with fast_paths.at_threads(r.process_threads):
                    save_samples(r, cfg, run.sample_picture(s.step), log)
            if s.step % t.ckpt_every == 0 or s.step == r.steps or stop_signal:
                if rank.is_main:
                    checkpoint.save_step(run, s.step, s.state_dict(), cfg.checkpoints.keep_last)
                last_good = s.step
            if stop_signal:
                log.close()
                handler = stop.chained(stop_signal)
                if handler is not None:
                    handler(stop_signal, None)  # e.g. submitit requeues the job, now that last.pt exists
                raise Interrupted(stop_signal, s.step, run_dir)
    log.close()
    if rank.is_main:
        end_of_run(run_dir)  # curves.png and samples/progress.gif; a drawing failure only warns
    return summary(r, run_dir, row, (s.step - first_step) / (time.perf_counter() - start))


def make_folders(run_dir: Path, rank: distributed.Rank) -> RunFolder:
    """The run folder, with samples/ and checkpoints/ (rank 0 creates them)."""
    run = RunFolder(run_dir)
    if rank.is_main:
        for folder in (run.samples, run.checkpoints):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise refused(folder, exc, doing="create") from None
    return run


def record_length(run: RunFolder, cfg: RunConfig) -> None:
    """The trainer.steps that trainer.minutes chose, written into the run's .hydra/config.yaml too
    (the checkpoints' config has it already), so the folder's config says how long the run is."""
    from omegaconf import OmegaConf

    if not run.hydra_config.is_file():  # a run started from Python, without Hydra's files
        return
    saved = OmegaConf.load(run.hydra_config)
    saved.trainer.steps, saved.trainer.epochs = cfg.trainer.steps, None
    text = OmegaConf.to_yaml(saved).encode()
    atomic_write(run.hydra_config, lambda f: f.write(text))


def summary(r: Run, run_dir: Path, row: dict, rate: float) -> dict:
    """What a run returns: its folder, steps, last losses, speed, last checkpoint and evaluation."""
    return {
        "run_dir": str(run_dir),
        "steps": r.state.step,
        "d_loss": row.get("d_loss"),
        "g_loss": row.get("g_loss"),
        "steps_per_s": round(rate, 2),
        "last_checkpoint": str(RunFolder(run_dir).last),
        "fast_path": r.state.fast_path,  # the pick a resume keeps (fast_paths.kept)
        # The last evaluation (trainer.eval_every also fires at the final step): what sweepers minimise.
        "metric": r.evaluator.metric if r.evaluator else None,
        "metric_value": row.get(r.evaluator.metric) if r.evaluator else None,
    }
