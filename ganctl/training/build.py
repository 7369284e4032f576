"""A training run's parts, built from its config: device, data, models, optimisers, state and GAN step."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ganctl import augment, kinds
from ganctl.config import RunConfig
from ganctl.data import BatchSampler, Dataset, load_dataset
from ganctl.ema import EMA
from ganctl.errors import ConfigError
from ganctl.generation import latents
from ganctl.losses import for_run
from ganctl.models import build_models, rows_independent
from ganctl.optim import Schedule, build_optimizer
from ganctl.training import fast_paths
from ganctl.training.budget import steps_for_minutes
from ganctl.training.cpu_kernels import without_dynamo
from ganctl.training.distributed import Rank
from ganctl.training.evaluator import Evaluator
from ganctl.training.manual_step import ManualStep
from ganctl.training.state import TrainingState
from ganctl.training.step import AutogradStep, GANStep, Precision
from ganctl.training.validate import check_data, training_device


@dataclass
class Run:
    """What the loop works with."""

    device: torch.device
    data: Dataset
    steps: int  # the step the run ends at
    state: TrainingState
    gan: GANStep
    evaluator: Evaluator | None
    schedule: Schedule
    # The process's own thread count where the run trains on another (trainer.threads): sample
    # grids and evaluations run on it, since the pick was timed on the updates alone.
    process_threads: int | None = None


def total_steps(cfg: RunConfig, batches_per_epoch: int) -> int:
    """trainer.steps, or trainer.epochs worth of D batches divided among d_steps per iteration."""
    t = cfg.trainer
    if t.steps is not None:
        return t.steps
    return max(1, math.ceil(t.epochs * batches_per_epoch / t.d_steps))


def rank_device(cfg: RunConfig, rank: Rank) -> torch.device:
    """This replica's device: with N processes on CUDA, one GPU each by local rank."""
    device = training_device(cfg)
    if device.type == "cuda":
        if rank.world > 1:
            device = torch.device("cuda", rank.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        # Kernels launched without an explicit device (cuDNN workspaces, NCCL) go to this one.
        torch.cuda.set_device(device)
        # cuDNN picks its fastest convolution algorithms for the run's fixed shapes once.
        torch.backends.cudnn.benchmark = True
    if cfg.trainer.batch_size % rank.world:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} does not split over {rank.world} "
            f"processes; accepted: a multiple of {rank.world}"
        )
    return device


def build(cfg: RunConfig, rank: Rank, resume: dict | None = None) -> Run:
    """Every part of the run, restored from `resume` (a loaded checkpoint) when given.

    The order of random draws (data, initial weights, fixed latents) is the one checkpoints of
    every ganctl so far were written with, so a resume continues bit for bit.
    """
    started = time.perf_counter()  # trainer.minutes counts from here
    t = cfg.trainer
    device = rank_device(cfg, rank)
    batch = t.batch_size // rank.world  # trainer.batch_size is the global batch: each replica draws its share
    torch.manual_seed(cfg.seed)
    # Rank 0 downloads a missing dataset alone; the others wait and then find it on disk.
    if not rank.is_main:
        rank.barrier()
    check_data(cfg)
    if rank.is_main:
        rank.barrier()
    data = load_dataset(cfg.dataset, device, cfg.seed, labels=cfg.model.conditional)
    n_classes = len(data.classes or []) if cfg.model.conditional else 0
    sampler = BatchSampler(len(data), batch, device, epoch_batches=len(data) // t.batch_size)
    steps = total_steps(cfg, len(data) // t.batch_size)
    G, D = build_models(cfg.model, data.shape, n_classes)
    G.to(device)
    D.to(device)
    saved = resume.get("fast_path") if resume is not None else None
    paths = choose_paths(cfg, G, D, data, device, rank, batch, n_classes, saved)
    fast_paths.apply(paths, G, D)
    process_threads = torch.get_num_threads() if paths.threads is not None else None
    fast_paths.use_threads(paths)  # the caller, commands.train.run, gives the count back
    if t.minutes is not None and resume is None:
        if rank.world > 1:  # torchrun's processes, which validation cannot see
            raise ConfigError("trainer.minutes times one process's updates; accepted: one process, or trainer.steps")
        step = timed_step(cfg, G, D, data, device, rank, batch, paths, n_classes)
        steps = steps_for_minutes(cfg, started, step, device)
        # Recorded in the config the checkpoints keep: a resume continues to the same end.
        t.steps, t.epochs = steps, None
    opt_g, opt_d = optimizers(cfg, G, D, device)
    fixed_z = latents(kinds.of(cfg.dataset).picture_count(t.num_samples), cfg.model, device=device)
    fixed_y = None
    if n_classes:
        # One row per class in the sample grids: num_samples rounded up to whole rows.
        per_class = math.ceil(t.num_samples / n_classes)
        fixed_z = latents(per_class * n_classes, cfg.model, device=device)
        fixed_y = torch.arange(n_classes, device=device).repeat_interleave(per_class)
    ema = make_ema(cfg, G)
    state = TrainingState(cfg, G, D, opt_g, opt_d, sampler, fixed_z, data.shape, device, ema, fixed_y, data.classes)
    state.fast_path = paths.as_dict(device)
    state.augment = run_augment(cfg, device)  # its adaptive p is training state: the checkpoint keeps it
    if resume is not None:
        state.load_state_dict(resume)
        if state.step >= steps:
            raise ConfigError(
                f"the checkpoint is at step {state.step}, which reaches trainer.steps={steps}; "
                f"accepted: resume with trainer.steps > {state.step}"
            )
    if rank.world > 1:
        # Replicas start identical (same seed, DDP's broadcast) and then draw different data and
        # latents. A multi-process resume continues statistically, not bit for bit.
        torch.manual_seed(cfg.seed + 7919 * rank.rank + 104729 * state.step)
        sampler.perm = None  # a resumed replica must not replay rank 0's saved permutation
    gan = make_step(
        cfg, G, D, opt_g, opt_d, device, rank, batch, paths.backward, n_classes, paths.precision, state.augment
    )
    gan.d_updates = state.step * t.d_steps  # lazy penalties stay on the same updates after a resume
    evaluator = Evaluator(cfg, device, n_classes) if t.eval_every and rank.is_main else None
    schedule = Schedule(cfg.optim, steps, [opt_g, opt_d])
    return Run(device, data, steps, state, gan, evaluator, schedule, process_threads)


def optimizers(cfg: RunConfig, G: nn.Module, D: nn.Module, device: torch.device) -> tuple:
    """G's and D's optimisers, built without importing torch._dynamo (cpu_kernels.without_dynamo)."""
    with without_dynamo():
        opt_g = build_optimizer(G.parameters(), cfg.optim, "g", device)
        return opt_g, build_optimizer(D.parameters(), cfg.optim, "d", device)


def choose_paths(
    cfg: RunConfig,
    G: nn.Module,
    D: nn.Module,
    data: Dataset,
    device: torch.device,
    rank: Rank,
    batch: int,
    n_classes: int = 0,
    saved: dict | None = None,
) -> fast_paths.Paths:
    """The step's implementation, memory format and precision: where `auto` leaves a choice, the
    pick of the checkpoint resumed (`saved`) where it can be kept, else the fastest combination
    timed here on this run's shapes (fast_paths.choose, cached per machine)."""
    log = logging.getLogger("ganctl.fast_path")
    if cfg.trainer.cpu_matmul == "onednn" and rank.is_main:
        log.info(
            "trainer.cpu_matmul=onednn: Linear layers run nn.Linear's own product; ganctl's oneDNN "
            "layers were removed (slower on an Intel Xeon, docs/BENCHMARKS.md)"
        )

    def trial(paths: fast_paths.Paths):
        gan, real, labels, _ = throwaway_step(cfg, G, D, data, device, rank, batch, paths, n_classes)
        return lambda: (gan.d_phase(real, labels), gan.g_phase())

    key = {
        "device": str(device),
        "data_shape": list(data.shape),
        "batch": batch,
        "model": asdict(cfg.model),
        "loss": [cfg.loss.name, cfg.loss.d_batch],
        "optim": [cfg.optim.name, cfg.optim.impl],
        "precision": cfg.trainer.precision,
    }
    is_conv = any(isinstance(m, nn.Conv2d) for m in D.modules())
    paths, reason = fast_paths.choose(cfg, device, rank.world, is_conv, trial, key, saved)
    if reason and rank.is_main:
        # Under `ganctl train`, Hydra shows INFO records on the console and keeps them in train.log.
        log.info(reason)
    return paths


def make_ema(cfg: RunConfig, G: nn.Module) -> EMA | None:
    """G_ema as trainer.ema or trainer.ema_half_life asks, or None."""
    t = cfg.trainer
    if t.ema is None and t.ema_half_life is None:
        return None
    return EMA(G, t.ema, t.ema_half_life, t.ema_warmup, t.batch_size)


def timed_step(
    cfg: RunConfig,
    G: nn.Module,
    D: nn.Module,
    data: Dataset,
    device: torch.device,
    rank: Rank,
    batch: int,
    paths: fast_paths.Paths,
    n_classes: int = 0,
) -> Callable[[], None]:
    """One whole training step as the loop runs it (batches drawn, d_steps D and g_steps G updates,
    the EMA), on throwaway copies: what trainer.minutes times."""
    t = cfg.trainer
    gan, _, _, G2 = throwaway_step(cfg, G, D, data, device, rank, batch, paths, n_classes)
    sampler = BatchSampler(len(data), batch, device, epoch_batches=len(data) // t.batch_size)
    ema = make_ema(cfg, G2)

    def step() -> None:
        for i in range(t.d_steps):
            real, idx = data.next_batch(sampler)
            gan.d_phase(real, data.batch_labels(idx) if n_classes else None, last=i == t.d_steps - 1)
        for _ in range(t.g_steps):
            gan.g_phase()
            if ema is not None:
                ema.update(G2)

    return step


def throwaway_step(
    cfg: RunConfig,
    G: nn.Module,
    D: nn.Module,
    data: Dataset,
    device: torch.device,
    rank: Rank,
    batch: int,
    paths: fast_paths.Paths,
    n_classes: int = 0,
) -> tuple[GANStep, torch.Tensor, torch.Tensor | None, nn.Module]:
    """A GAN step on throwaway copies of G, D and their optimisers, one fixed real batch (and its
    labels), and the copy of G: for timing updates without touching the run's own."""
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    fast_paths.apply(paths, G2, D2)
    opt_g, opt_d = optimizers(cfg, G2, D2, device)
    gan = make_step(
        cfg,
        G2,
        D2,
        opt_g,
        opt_d,
        device,
        rank,
        batch,
        paths.backward,
        n_classes,
        paths.precision,
    )
    first = torch.arange(batch, device=device)
    return gan, data.batch(first), data.batch_labels(first) if cfg.model.conditional else None, G2


def make_step(
    cfg: RunConfig,
    G: nn.Module,
    D: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    device: torch.device,
    rank: Rank,
    batch: int,
    backward: str,
    n_classes: int = 0,
    precision: str | None = None,
    aug: augment.Augment | None = None,
) -> GANStep:
    """A GANStep of the given implementation ("manual" or "autograd") around G, D and their optimisers,
    in `precision` (default trainer.precision; with `auto`, fast_paths resolves it), augmenting
    with `aug` (default: a new one of trainer.augment at trainer.augment_p)."""
    t = cfg.trainer
    common = dict(
        G=G,
        D=D,
        opt_g=opt_g,
        opt_d=opt_d,
        loss=for_run(cfg.loss),
        latent=lambda n: latents(n, cfg.model, device=device),
        batch=batch,
        precision=Precision(precision or t.precision, device),
        skip_nonfinite=t.on_nan == "skip",
        rank=rank,
        device=device,
        n_classes=n_classes,
    )
    shuffled = cfg.loss.d_batch == "shuffled"
    if backward == "manual":
        return ManualStep(**common, shuffled=shuffled)
    G_run, D_run, ddp = G, D, ()
    if rank.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G_run, D_run = DDP(G, device_ids=ids), DDP(D, device_ids=ids)  # broadcasts rank 0's weights
        ddp = (G_run, D_run)
    # The penalty differentiates D twice, which torch.compile's AOTAutograd refuses: it scores
    # the interpolates with D uncompiled (inside DDP, so its gradients are reduced with the loss's).
    D_penalty, D_g_phase = D_run, D
    if t.compile:
        G_run, D_run = torch.compile(G_run, mode=t.compile_mode), torch.compile(D_run, mode=t.compile_mode)
        D_g_phase = D_run if rank.world == 1 else torch.compile(D, mode=t.compile_mode)
    # Batch statistics would mix real and fake rows; everything else scores both in one pass.
    return AutogradStep(
        **common,
        G_run=G_run,
        D_run=D_run,
        D_g_phase=D_g_phase,
        D_penalty=D_penalty,
        joint=rows_independent(D),
        shuffled=shuffled,
        augment=aug if aug is not None else run_augment(cfg, device),
        cuda_graphs=t.compile and t.compile_mode != "default" and device.type == "cuda",
        batch_gpu=t.batch_gpu,
        ddp=ddp,
    )


def run_augment(cfg: RunConfig, device: torch.device) -> augment.Augment | None:
    """trainer.augment at trainer.augment_p; `auto` steps p by the global batch (all replicas' scores)."""
    t = cfg.trainer
    return augment.policy(t.augment, t.augment_p, device, t.batch_size, t.augment_target)
