"""The training loop: run(cfg, run_dir). Imports no Hydra."""
from __future__ import annotations

import contextlib
import csv
import functools
import math
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ganctl import __version__, checkpoint, distributed, images
from ganctl.config import RunConfig, to_dict, validate
from ganctl.data import BatchSampler, dataset_size, load_dataset
from ganctl.ema import EMA
from ganctl.errors import CheckpointError, ConfigError, DataError, Diverged, Interrupted
from ganctl.losses import build_loss
from ganctl.manual_step import ManualStep, use_manual
from ganctl.models import build_models, rows_independent, sample_latent
from ganctl.optim import build_optimizer, stepper

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


def training_device(cfg: RunConfig) -> torch.device:
    """The device a run trains on, with the options that depend on it checked."""
    device = resolve_device(cfg.trainer.device)
    if cfg.trainer.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"trainer.precision=fp16 needs a CUDA device, this run uses {device.type}; "
                          "accepted here: fp32, bf16")
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


def mixed_precision(precision: str, device: torch.device):
    """An autocast context factory and a gradient scaler per network (scaling only for fp16)."""
    if precision == "fp32":
        return contextlib.nullcontext, NO_SCALER, NO_SCALER
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    autocast = functools.partial(torch.autocast, device_type=device.type, dtype=dtype)
    if precision == "fp16":
        # fp16 gradients underflow without loss scaling; D and G get one scaler each.
        return autocast, torch.amp.GradScaler(device.type), torch.amp.GradScaler(device.type)
    return autocast, NO_SCALER, NO_SCALER


class _NoScaler:
    """GradScaler's interface for fp32/bf16, without its per-step bookkeeping."""

    def scale(self, loss):
        return loss

    def step(self, opt):
        opt.step()

    def update(self):
        pass


NO_SCALER = _NoScaler()


@contextlib.contextmanager
def frozen(params: list[torch.Tensor]):
    """Parameters that record no gradient inside the block (their requires_grad is restored)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@torch.no_grad()
def generate(G: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    was_training = G.training
    G.eval()
    try:
        return G(z)
    finally:
        G.train(was_training)


class StopRequest:
    """SIGINT/SIGTERM/SIGUSR2 ask the loop to finish its step and checkpoint; a second SIGINT aborts.

    SIGUSR2 is what SLURM sends (through submitit) before a time limit. A handler installed before
    ours (submitit's requeue) is called after the checkpoint is written.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: no checkpoint, stop now
        self.signum = signum
        print(f"\nganctl: {signal.Signals(signum).name} received; finishing the step and saving a checkpoint "
              "(Ctrl-C again to abort at once)", file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def chained(self, signum: int):
        """The Python handler that was there before ours for `signum`, if any worth calling."""
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            return previous
        return None

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def prune_checkpoints(ckpt_dir: Path, keep_last: int | None) -> None:
    """Keep the `keep_last` newest step_N.pt (last.pt is a separate link and always stays)."""
    if not keep_last:
        return
    periodic = sorted(ckpt_dir.glob("step_*.pt"))
    for old in periodic[:-keep_last]:
        old.unlink(missing_ok=True)


def open_metrics(path: Path, fields: list[str], resume_step: int | None):
    """metrics.csv for appending: a resumed run drops rows logged after its checkpoint."""
    rows = []
    if resume_step is not None and path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
    handle = open(path, "w", newline="")
    writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    handle.flush()
    return handle, writer


def first_bad(named: dict[str, torch.Tensor]) -> str | None:
    for name, value in named.items():
        if not torch.isfinite(value).all():
            return name
    return None


def run(cfg: RunConfig, run_dir: Path, resume: dict | None = None) -> dict:
    """Train one GAN as `cfg` says; everything it writes goes under `run_dir`.

    `resume` is a loaded checkpoint: training continues from its step with every state restored
    (weights, optimisers, RNGs, data order), so N + N steps equal 2N steps straight, bit for bit.
    With trainer.devices=N > 1 this spawns N data-parallel processes; under torchrun it joins
    the process group torchrun set up.
    """
    validate(cfg)
    env_rank = distributed.from_env()
    if env_rank is None and cfg.trainer.devices > 1:
        uses_cuda = training_device(cfg).type == "cuda"
        return distributed.spawn(run_rank, cfg.trainer.devices, uses_cuda, cfg, str(run_dir), resume)
    return run_rank(env_rank or distributed.Rank(), cfg, run_dir, resume)


def run_rank(rank: distributed.Rank, cfg: RunConfig, run_dir: Path | str, resume: dict | None = None) -> dict:
    """One replica's training loop; rank 0 alone writes files and shows the progress bar."""
    t = cfg.trainer
    device = training_device(cfg)
    if device.type == "cuda" and rank.world > 1:
        device = torch.device("cuda", rank.local_rank)
        torch.cuda.set_device(device)
    if t.batch_size % rank.world:
        raise ConfigError(f"trainer.batch_size={t.batch_size} does not split over {rank.world} processes; "
                          f"accepted: a multiple of {rank.world}")
    batch = t.batch_size // rank.world
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)

    check_data(cfg)
    data = load_dataset(cfg.dataset, device, cfg.seed)
    # trainer.batch_size is the global batch: each replica draws its share.
    sampler = BatchSampler(len(data), batch, device, epoch_batches=len(data) // t.batch_size)
    steps = total_steps(cfg, len(data) // t.batch_size)

    # torch.compile traces plain F.linear; the oneDNN path is an eager-mode speed-up.
    G, D = build_models(cfg.model, data.shape, cpu_matmul="blas" if t.compile else t.cpu_matmul)
    memory_format = torch.channels_last if t.channels_last and data.is_image else torch.preserve_format
    G.to(device, memory_format=memory_format)
    D.to(device, memory_format=memory_format)
    # The loop calls G_fast/D_fast; checkpoints hold G/D's plain state dicts (no compile prefixes).
    G_fast, D_fast = G, D
    if rank.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G_fast, D_fast = DDP(G, device_ids=ids), DDP(D, device_ids=ids)  # broadcasts rank 0's weights
    # The G phase needs D's function, not its weight gradients: it calls D outside DDP (nothing of
    # D's to all-reduce) and backpropagates into G's parameters only, which skips D's dW matmuls.
    D_plain = D
    if t.compile:
        G_fast, D_fast = torch.compile(G_fast, mode=t.compile_mode), torch.compile(D_fast, mode=t.compile_mode)
        D_plain = D_fast if rank.world == 1 else torch.compile(D, mode=t.compile_mode)
    g_params = list(G.parameters())
    d_params = [p for p in D.parameters() if p.requires_grad]
    # Batch statistics would mix real and fake rows; everything else scores both in one pass.
    joint_d = rows_independent(D)
    autocast, scaler_d, scaler_g = mixed_precision(t.precision, device)
    loss = build_loss(cfg.loss)
    opt_g = build_optimizer(G.parameters(), cfg.optim, "g", device)
    opt_d = build_optimizer(D.parameters(), cfg.optim, "d", device)
    # fp32's updates skip Optimizer.step's Python where its fused kernel can be called directly.
    step_d = stepper(opt_d) if scaler_d is NO_SCALER else functools.partial(scaler_d.step, opt_d)
    step_g = stepper(opt_g) if scaler_g is NO_SCALER else functools.partial(scaler_g.step, opt_g)
    # trainer.backward: hand-written gradients for MLPs (ganctl/manual_step.py), else autograd.
    manual = None
    if use_manual(cfg, device, rank.world):
        manual = ManualStep(G, D, loss, lambda n: sample_latent(n, cfg.model, device), batch)
    fixed_z = sample_latent(t.num_samples if data.is_image else HIST_SAMPLES, cfg.model, device)
    step = 0
    if resume is not None:
        step = restore(resume, G, D, opt_g, opt_d, sampler, device)
        fixed_z = resume["fixed_z"].to(device)
        if step >= steps:
            raise ConfigError(f"the checkpoint is at step {step}, which reaches trainer.steps={steps}; "
                              f"accepted: resume with trainer.steps > {step}")
    if rank.world > 1:
        # Replicas start identical (same seed, DDP's broadcast) and then draw different data and
        # latents. A multi-process resume continues statistically, not bit for bit.
        torch.manual_seed(cfg.seed + 7919 * rank.rank + 104729 * step)
        sampler.perm = None  # a resumed replica must not replay rank 0's saved permutation
    # Built after a resume's restore, so a run that turns EMA on at resume averages from its current G.
    ema = EMA(G, t.ema) if t.ema is not None else None
    if ema is not None and resume is not None and resume.get("G_ema") is not None:
        ema.load_state_dict(resume["G_ema"])

    samples_dir, ckpt_dir = run_dir / "samples", run_dir / "checkpoints"
    if rank.is_main:
        for folder in (samples_dir, ckpt_dir):
            folder.mkdir(parents=True, exist_ok=True)
    fields = METRIC_FIELDS + ([] if data.is_image else GAUSSIAN_FIELDS)
    if cfg.loss.name == "wgan_gp":
        fields.append("grad_norm")  # critic gradient norm on interpolates; WGAN-GP pushes it to 1
    if t.on_nan == "skip":
        fields.append("nan_skips")
    metric_name = None
    if t.eval_every:
        metric_name = ("fd" if data.is_image else "w1") if t.eval_metric == "auto" else t.eval_metric
        fields += ["fd", "classifier_score"] if data.is_image else ["w1", "ks_statistic"]
    fields += ["time", "steps_per_s"]
    if rank.is_main:
        metrics_file, metrics = open_metrics(run_dir / "metrics.csv", fields, step if resume else None)

    G_sample = ema.model if ema is not None else G  # grids and logged 1-D stats use G_ema when on
    best = resume.get("best_metric") if resume else None
    evaluator = Evaluator(cfg, data.is_image, device) if t.eval_every and rank.is_main else None

    def save_samples(step: int) -> None:
        fake = generate(G_sample, fixed_z)
        path = samples_dir / f"step_{step:06d}.png"
        if data.is_image:
            images.save_png(images.grid(images.to_uint8(fake, data.range), nrow=int(math.sqrt(len(fake))) or 1), path)
        else:
            d = cfg.dataset
            hist = images.histogram(fake.cpu().numpy(), d.mean, d.std, title=f"step {step}")
            images.save_png(hist, path)

    def checkpoint_payload(step: int) -> dict:
        return {
            "ganctl_version": __version__,
            "config": to_dict(cfg),
            "step": step,
            "epoch": sampler.epoch,
            "data_shape": list(data.shape),
            "G": G.state_dict(),
            "G_ema": ema.state_dict() if ema is not None else None,
            "D": D.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": rng_state(device),
            "fixed_z": fixed_z.cpu(),
            "best_metric": best,
        }

    def save_checkpoint(step: int) -> Path:
        path = ckpt_dir / f"step_{step:06d}.pt"
        checkpoint.save(path, checkpoint_payload(step))
        checkpoint.link_as(path, ckpt_dir / "last.pt")
        prune_checkpoints(ckpt_dir, cfg.checkpoints.keep_last)
        return path

    # Logged values stay on the device, unreduced, and are reduced and read once per log_every:
    # no per-step sync and no per-step ops for logging.
    n_stats = 4
    pending: list[tuple] = []  # (D's raw stats, detached g_loss) of each step since the last row
    last_log_step, last_good_ckpt = step, (step if resume else None)
    nan_skips = skips_in_row = 0
    start = last_log_time = time.perf_counter()
    # In a log file (not a terminal) a bar redrawn 10 times a second is noise: redraw every 30 s.
    bar = tqdm(total=steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not (t.progress and rank.is_main), file=sys.stderr, mininterval=0.1 if sys.stderr.isatty() else 30)
    row: dict = {}
    with StopRequest() as stop:
        while step < steps:
            skip = False
            # D phase: d_steps updates, each on a fresh real batch and a fresh, detached fake batch.
            for i in range(t.d_steps):
                real = data.batch(sampler.next())
                if manual is not None:
                    d_loss, d_stats = manual.d_phase(real, draw_g_latents=i == t.d_steps - 1)
                else:
                    with torch.no_grad(), autocast():
                        fake = G_fast(sample_latent(batch, cfg.model, device))
                    with autocast():
                        d_loss, d_stats = loss.d_phase(D_fast, real, fake, joint=joint_d)
                    opt_d.zero_grad(set_to_none=True)
                    scaler_d.scale(d_loss).backward()
                # A host sync (and an all-reduce over replicas), only in skip mode.
                if t.on_nan == "skip" and rank.any(not torch.isfinite(d_loss).item(), device):
                    skip = True
                    continue
                step_d()
                scaler_d.update()
            # G phase: g_steps updates, each through the just-updated D with fresh latents.
            for _ in range(t.g_steps):
                if manual is not None:
                    g_loss = manual.g_phase()
                else:
                    # D's weights are constants in this phase. Recording no gradient for them skips
                    # their dW products even in custom autograd functions (oneDNN Linear), which
                    # cannot see backward's inputs= pruning.
                    with frozen(d_params), autocast():
                        g_loss = loss.g_phase(D_plain, G_fast(sample_latent(batch, cfg.model, device)))
                    opt_g.zero_grad(set_to_none=True)
                    scaler_g.scale(g_loss).backward(inputs=g_params)
                if t.on_nan == "skip" and rank.any(not torch.isfinite(g_loss).item(), device):
                    skip = True
                    continue
                step_g()
                scaler_g.update()
                if ema is not None:
                    ema.update(G)
            step += 1
            bar.update(1)
            if skip:
                nan_skips, skips_in_row = nan_skips + 1, skips_in_row + 1
                if skips_in_row >= t.max_nan_skips:
                    raise Diverged(f"{skips_in_row} steps in a row had a non-finite loss (up to step {step}); "
                                   f"stopped, last good checkpoint: {last_good_ckpt}; lower optim.lr")
                continue
            skips_in_row = 0
            pending.append((d_stats, g_loss.detach()))

            if step % t.log_every == 0 or step == steps:
                count = step - last_log_step
                local = torch.zeros(n_stats + 1, device=device)
                if pending:
                    local = torch.cat([loss.summarise([d for d, _ in pending]),
                                       torch.stack([g for _, g in pending]).mean().view(1)])
                pending.clear()
                values = (rank.sum(local) / rank.world).tolist()
                bad = first_bad({"d_loss": torch.tensor(values[0]), "g_loss": torch.tensor(values[n_stats]),
                                 "generator weights": torch.stack([p.detach().sum() for p in G.parameters()]),
                                 "discriminator weights": torch.stack([p.detach().sum() for p in D.parameters()])})
                if bad is not None:
                    where = f"checkpoints/step_{last_good_ckpt:06d}.pt" if last_good_ckpt else "none written yet"
                    raise Diverged(f"{bad} became non-finite between steps {last_log_step} and {step}; stopped. "
                                   f"Last good checkpoint: {where}. Lower optim.lr or set trainer.on_nan=skip")
                if t.check_replicas and not rank.replicas_agree([G, D], device):
                    raise Diverged(f"replicas hold different weights at step {step}; "
                                   "this is a bug in data-parallel training, please report it")
                now = time.perf_counter()
                row = {
                    "step": step, "epoch": round(sampler.epoch, 4), "d_loss": values[0],
                    "g_loss": values[n_stats], "d_real": values[1], "d_fake": values[2],
                    "grad_norm": values[3], "nan_skips": nan_skips,
                    "time": round(now - start, 3), "steps_per_s": round(count / (now - last_log_time), 2),
                }
                if rank.is_main and not data.is_image:
                    fake = generate(G_sample, fixed_z)
                    row["fake_mean"], row["fake_std"] = fake.mean().item(), fake.std().item()
                postfix = {"d_loss": f"{row['d_loss']:.3f}", "g_loss": f"{row['g_loss']:.3f}",
                           "D(x)": f"{row['d_real']:.2f}", "D(G(z))": f"{row['d_fake']:.2f}"}
                if evaluator is not None and (step % t.eval_every == 0 or step == steps):
                    scores = evaluator(G_sample)
                    row.update(scores)
                    postfix[metric_name] = f"{scores[metric_name]:.3g}"
                    if best is None or scores[metric_name] < best:
                        best = scores[metric_name]
                        checkpoint.save(ckpt_dir / "best.pt", {**checkpoint_payload(step), "best_metric": best})
                if rank.is_main:
                    metrics.writerow(row)
                    metrics_file.flush()
                bar.set_postfix(postfix, refresh=False)
                last_log_step, last_log_time = step, now
            # Replicas agree on stopping at the same step (one tiny all-reduce per step when N > 1).
            stop_signal = rank.any(stop.signum or 0, device) if rank.world > 1 else stop.signum
            if rank.is_main and (step % t.sample_every == 0 or step == steps):
                save_samples(step)
            if step % t.ckpt_every == 0 or step == steps or stop_signal:
                if rank.is_main:
                    save_checkpoint(step)
                last_good_ckpt = step
            if stop_signal:
                bar.close()
                if rank.is_main:
                    metrics_file.close()
                handler = stop.chained(stop_signal)
                if handler is not None:
                    handler(stop_signal, None)  # e.g. submitit requeues the job, now that last.pt exists
                raise Interrupted(stop_signal, step, run_dir)
    bar.close()
    if rank.is_main:
        metrics_file.close()
    return {
        "run_dir": str(run_dir),
        "steps": step,
        "d_loss": row.get("d_loss"),
        "g_loss": row.get("g_loss"),
        "steps_per_s": round((step - (resume or {}).get("step", 0)) / (time.perf_counter() - start), 2),
        "last_checkpoint": str(ckpt_dir / "last.pt"),
        # The last evaluation (trainer.eval_every also fires at the final step): what sweepers minimise.
        "metric": metric_name,
        "metric_value": row.get(metric_name) if metric_name else None,
    }


class Evaluator:
    """trainer.eval_every: scores G on trainer.eval_samples samples (fixed latents, so comparable)."""

    def __init__(self, cfg: RunConfig, is_image: bool, device: torch.device):
        self.cfg, self.is_image, self.device = cfg, is_image, device
        n = cfg.trainer.eval_samples
        gen = torch.Generator().manual_seed(12345)
        m = cfg.model
        self.z = (torch.rand(n, m.z_dim, generator=gen) if m.latent == "uniform"
                  else torch.randn(n, m.z_dim, generator=gen))
        self.features = None

    def __call__(self, G: torch.nn.Module) -> dict:
        from ganctl import metrics

        with torch.no_grad():
            x = torch.cat([generate(G, z.to(self.device)).float().cpu() for z in self.z.split(500)])
        if not self.is_image:
            d = self.cfg.dataset
            stats = metrics.gaussian1d_stats(x.numpy(), d.mean, d.std)
            return {"w1": stats["wasserstein1"], "ks_statistic": stats["ks_statistic"]}
        from ganctl import features
        from ganctl.evaluate import image_metrics

        if self.features is None:  # trained on first use and cached under the data folder
            self.features = features.load_or_fit(self.cfg.dataset, self.device, progress=False)
        pixels = images.to_uint8(x, self.cfg.dataset.range)
        scores = image_metrics(pixels, self.features, self.device, 500, pr_samples=1000, seed=0)
        return {"fd": scores["fd"], "classifier_score": scores["classifier_score"]}


def load_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Restore the optimiser's moments and step counts, keeping this config's hyperparameters.

    load_state_dict alone would bring back the checkpoint's lr, so `resume=... optim.lr=X`
    would silently keep the old rate; with an unchanged config both are the same values.
    """
    hyper = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, values in zip(opt.param_groups, hyper):
        group.update(values)


def restore(ckpt: dict, G, D, opt_g, opt_d, sampler: BatchSampler, device: torch.device) -> int:
    """Load every piece of training state from a checkpoint; returns its step."""
    try:
        G.load_state_dict(ckpt["G"])
        D.load_state_dict(ckpt["D"])
        load_optimizer(opt_g, ckpt["opt_g"])
        load_optimizer(opt_d, ckpt["opt_d"])
    except (RuntimeError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"the checkpoint's weights do not fit this config's model ({reason}); "
                              "resume with the architecture it was trained with") from None
    sampler.load_state_dict(ckpt["sampler"])
    set_rng_state(ckpt["rng"], device)
    return int(ckpt["step"])
