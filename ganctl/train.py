"""The training loop: run(cfg, run_dir). Imports no Hydra."""
from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ganctl import __version__, checkpoint, images
from ganctl.config import RunConfig, to_dict, validate
from ganctl.data import BatchSampler, dataset_size, load_dataset
from ganctl.errors import ConfigError, DataError
from ganctl.losses import build_loss
from ganctl.models import build_models, sample_latent
from ganctl.optim import build_optimizer

METRIC_FIELDS = ["step", "epoch", "d_loss", "g_loss", "d_real", "d_fake"]
GAUSSIAN_FIELDS = ["fake_mean", "fake_std"]
HIST_SAMPLES = 10_000  # fixed latents for the 1-D histogram; 64 points make no histogram


def resolve_device(spec: str, key: str = "trainer.device") -> torch.device:
    """auto -> CUDA, then MPS, then CPU; anything named must exist on this machine."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    accepted = "auto, cpu" + (", cuda, cuda:N" if torch.cuda.is_available() else "") + (", mps" if has_mps else "")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}={spec!r} is not a device; accepted: {accepted}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={spec!r} but this machine has no CUDA device; accepted: {accepted}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key}={spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"accepted: {accepted}"
            )
    elif device.type == "mps" and not has_mps:
        raise ConfigError(f"{key}={spec!r} but MPS is not available here; accepted: {accepted}")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key}={spec!r} is not supported; accepted: {accepted}")
    return device


def check_data(cfg: RunConfig) -> None:
    """The dataset is there (or downloadable) and holds at least one batch."""
    size = dataset_size(cfg.dataset)
    if cfg.trainer.batch_size > size:
        raise DataError(
            f"trainer.batch_size={cfg.trainer.batch_size} is larger than the dataset "
            f"({cfg.dataset.name} {cfg.dataset.split}: {size} samples); accepted: 1..{size}"
        )


def total_steps(cfg: RunConfig, batches_per_epoch: int) -> int:
    """trainer.steps, or trainer.epochs worth of D batches divided among d_steps per iteration."""
    t = cfg.trainer
    if t.steps is not None:
        return t.steps
    return max(1, math.ceil(t.epochs * batches_per_epoch / t.d_steps))


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@torch.no_grad()
def generate(G: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    was_training = G.training
    G.eval()
    try:
        return G(z)
    finally:
        G.train(was_training)


def run(cfg: RunConfig, run_dir: Path) -> dict:
    """Train one GAN as `cfg` says; everything it writes goes under `run_dir`."""
    validate(cfg)
    t = cfg.trainer
    device = resolve_device(t.device)
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)

    check_data(cfg)
    data = load_dataset(cfg.dataset, device, cfg.seed)
    sampler = BatchSampler(len(data), t.batch_size, device)
    steps = total_steps(cfg, sampler.batches_per_epoch)

    G, D = build_models(cfg.model, data.shape)
    G.to(device)
    D.to(device)
    loss = build_loss(cfg.loss)
    opt_g = build_optimizer(G.parameters(), cfg.optim, "g", device)
    opt_d = build_optimizer(D.parameters(), cfg.optim, "d", device)
    fixed_z = sample_latent(t.num_samples if data.is_image else HIST_SAMPLES, cfg.model, device)

    samples_dir, ckpt_dir = run_dir / "samples", run_dir / "checkpoints"
    for folder in (samples_dir, ckpt_dir):
        folder.mkdir(parents=True, exist_ok=True)
    fields = METRIC_FIELDS + ([] if data.is_image else GAUSSIAN_FIELDS)
    if cfg.loss.name == "wgan_gp":
        fields.append("grad_norm")  # critic gradient norm on interpolates; WGAN-GP pushes it to 1
    fields += ["time", "steps_per_s"]
    metrics_file = open(run_dir / "metrics.csv", "w", newline="")
    metrics = csv.DictWriter(metrics_file, fieldnames=fields)
    metrics.writeheader()

    def save_samples(step: int) -> None:
        fake = generate(G, fixed_z)
        path = samples_dir / f"step_{step:06d}.png"
        if data.is_image:
            images.save_png(images.grid(images.to_uint8(fake, data.range), nrow=int(math.sqrt(len(fake))) or 1), path)
        else:
            d = cfg.dataset
            hist = images.histogram(fake.cpu().numpy(), d.mean, d.std, title=f"step {step}")
            images.save_png(hist, path)

    def save_checkpoint(step: int) -> Path:
        payload = {
            "ganctl_version": __version__,
            "config": to_dict(cfg),
            "step": step,
            "epoch": sampler.epoch,
            "data_shape": list(data.shape),
            "G": G.state_dict(),
            "D": D.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": rng_state(device),
            "fixed_z": fixed_z.cpu(),
        }
        path = ckpt_dir / f"step_{step:06d}.pt"
        checkpoint.save(path, payload)
        checkpoint.link_as(path, ckpt_dir / "last.pt")
        return path

    # Logged scalars stay on the device and are read once per log_every: no per-step sync.
    n_stats = 4
    acc = torch.zeros(2 * n_stats, device=device)
    step, last_log_step = 0, 0
    start = last_log_time = time.perf_counter()
    bar = tqdm(total=steps, desc="train", unit="step", dynamic_ncols=True,
               disable=not t.progress, file=sys.stderr)
    row: dict = {}
    while step < steps:
        # D phase: d_steps updates, each on a fresh real batch and a fresh, detached fake batch.
        for _ in range(t.d_steps):
            real = data.batch(sampler.next())
            with torch.no_grad():
                fake = G(sample_latent(t.batch_size, cfg.model, device))
            d_loss, d_stats = loss.d_phase(D, real, fake)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        # G phase: g_steps updates, each through the just-updated D with fresh latents.
        for _ in range(t.g_steps):
            g_loss = loss.g_phase(D, G(sample_latent(t.batch_size, cfg.model, device)))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
        acc[:n_stats] += d_stats
        acc[n_stats] += g_loss.detach()
        step += 1
        bar.update(1)

        if step % t.log_every == 0 or step == steps:
            count = step - last_log_step
            values = (acc / count).tolist()
            acc.zero_()
            now = time.perf_counter()
            row = {
                "step": step, "epoch": round(sampler.epoch, 4), "d_loss": values[0],
                "g_loss": values[n_stats], "d_real": values[1], "d_fake": values[2],
                "time": round(now - start, 3), "steps_per_s": round(count / (now - last_log_time), 2),
            }
            if "grad_norm" in fields:
                row["grad_norm"] = values[3]
            if not data.is_image:
                fake = generate(G, fixed_z)
                row["fake_mean"], row["fake_std"] = fake.mean().item(), fake.std().item()
            metrics.writerow(row)
            metrics_file.flush()
            bar.set_postfix({"d_loss": f"{row['d_loss']:.3f}", "g_loss": f"{row['g_loss']:.3f}",
                             "D(x)": f"{row['d_real']:.2f}", "D(G(z))": f"{row['d_fake']:.2f}"}, refresh=False)
            last_log_step, last_log_time = step, now
        if step % t.sample_every == 0 or step == steps:
            save_samples(step)
        if step % t.ckpt_every == 0 or step == steps:
            save_checkpoint(step)
    bar.close()
    metrics_file.close()
    return {
        "run_dir": str(run_dir),
        "steps": step,
        "d_loss": row.get("d_loss"),
        "g_loss": row.get("g_loss"),
        "steps_per_s": round(step / (time.perf_counter() - start), 2),
        "last_checkpoint": str(ckpt_dir / "last.pt"),
    }
