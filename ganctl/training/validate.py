"""The whole config checked before any data or device is touched: one message per problem."""

from __future__ import annotations

import math
from typing import Any

import torch

from ganctl.augment import AUGMENTS
from ganctl.config import RunConfig
from ganctl.data import DATASETS, IMAGES, POINTS_1D, POINTS_2D, SPLITS, dataset_size, has_labels, info, mixture_modes
from ganctl.devices import resolve_device
from ganctl.errors import ConfigError, DataError
from ganctl.losses import LOSSES
from ganctl.models import ACTIVATIONS, IMAGE_MODELS, INITS, MODELS, NORMS, OUTPUTS, image_side_problem
from ganctl.optim import IMPLS, OPTIMIZERS, SCHEDULES
from ganctl.training.cpu_kernels import BACKWARDS, CPU_MATMULS
from ganctl.training.fast_paths import native_bf16
from ganctl.training.manual_step import unsupported


# Choices accepted by each key: the registries in the implementing modules are the truth, so a
# new entry shows up in the error text.
def _choices() -> dict[str, list[str]]:
    return {
        "dataset.name": sorted(DATASETS),
        "dataset.split": list(SPLITS),
        "dataset.channels": ["auto", "1", "3"],
        "dataset.labels": ["none", "subfolders"],
        "model.arch": sorted(MODELS),
        "model.latent": ["normal", "uniform"],
        "model.init": sorted(INITS),
        "model.g_act": sorted(ACTIVATIONS),
        "model.d_act": sorted(ACTIVATIONS),
        "model.g_out": sorted(OUTPUTS),
        "model.g_norm": sorted(NORMS),
        "model.d_norm": sorted(NORMS),
        "model.d_features": ["none", "moments"],
        "loss.name": sorted(LOSSES),
        "loss.d_batch": ["separate", "shuffled"],
        "optim.name": sorted(OPTIMIZERS),
        "optim.g.name": sorted(OPTIMIZERS),
        "optim.d.name": sorted(OPTIMIZERS),
        "optim.impl": list(IMPLS),
        "optim.schedule": list(SCHEDULES),
        "trainer.on_nan": ["stop", "skip"],
        "trainer.precision": ["fp32", "bf16", "fp16", "auto"],
        "trainer.cpu_matmul": list(CPU_MATMULS),
        "trainer.backward": list(BACKWARDS),
        "trainer.compile_mode": ["default", "reduce-overhead", "max-autotune"],
        "trainer.eval_metric": ["auto", "fd", "kid", "w1"],
        "trainer.eval_features": ["auto", "ganctl", "selfsup", "inception"],
    }


def _get(cfg: RunConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _bad(key: str, value: Any, accepted: str) -> str:
    return f"{key}={value!r} is invalid; accepted: {accepted}"


class Problems(list):
    """The messages one check collects; `bad(key, value, accepted)` adds one in the usual form."""

    def bad(self, key: str, value: Any, accepted: str) -> None:
        self.append(_bad(key, value, accepted))


def validate(cfg: RunConfig) -> None:
    """Check every value, then the combinations; raise one ConfigError listing every problem."""
    problems = _choice_problems(cfg) + _range_problems(cfg) + _value_problems(cfg)
    problems += _optim_problems(cfg) + _logger_problems(cfg)
    if problems:  # combination rules only make sense between valid fields
        raise ConfigError(*problems)
    problems = _combination_problems(cfg)
    if problems:
        raise ConfigError(*problems)


def _choice_problems(cfg: RunConfig) -> list[str]:
    problems = []
    for key, options in _choices().items():
        value = _get(cfg, key)
        if value is None and key in ("optim.g.name", "optim.d.name"):
            continue
        if value not in options:
            problems.append(_bad(key, value, ", ".join(options)))
    return problems


def _range_problems(cfg: RunConfig) -> list[str]:
    """Counts and sizes below 1, and the run's length."""
    problems = Problems()
    bad = problems.bad

    t, m, d = cfg.trainer, cfg.model, cfg.dataset
    positive_ints = {
        "trainer.batch_size": t.batch_size,
        "trainer.d_steps": t.d_steps,
        "trainer.g_steps": t.g_steps,
        "trainer.log_every": t.log_every,
        "trainer.sample_every": t.sample_every,
        "trainer.ckpt_every": t.ckpt_every,
        "trainer.num_samples": t.num_samples,
        "model.z_dim": m.z_dim,
        "model.width": m.width,
        "dataset.samples_per_epoch": d.samples_per_epoch,
        "dataset.resolution": d.resolution,
        "trainer.max_nan_skips": t.max_nan_skips,
        "trainer.devices": t.devices,
        "trainer.eval_samples": t.eval_samples,
        "loss.r1_every": cfg.loss.r1_every,
    }
    for key, value in positive_ints.items():
        if value < 1:
            bad(key, value, "an integer >= 1")
    if t.steps is None and t.epochs is None and t.minutes is None:
        problems.append("trainer.steps, trainer.epochs and trainer.minutes are all null; set one of them")
    if t.minutes is not None and not (t.minutes > 0 and math.isfinite(t.minutes)):
        bad("trainer.minutes", t.minutes, "a number of minutes > 0 (or null to use trainer.steps or trainer.epochs)")
    if t.minutes is not None and t.devices > 1:
        bad("trainer.minutes", t.minutes, "null with trainer.devices > 1 (one process times the run's updates)")
    if t.steps is not None and t.steps < 1:
        bad("trainer.steps", t.steps, "an integer >= 1 (or null to use trainer.epochs)")
    if t.epochs is not None and not (t.epochs > 0 and math.isfinite(t.epochs)):
        bad("trainer.epochs", t.epochs, "a number > 0 (or null to use trainer.steps)")
    for key, widths in (("model.g_hidden", m.g_hidden), ("model.d_hidden", m.d_hidden)):
        if any(w < 1 for w in widths):
            bad(key, widths, "a list of layer widths >= 1")
    return problems


def _value_problems(cfg: RunConfig) -> list[str]:
    """Numbers and names out of their range, other than the counts (_range_problems)."""
    problems = Problems()
    bad = problems.bad

    t, m, d = cfg.trainer, cfg.model, cfg.dataset
    if not 0.0 <= m.d_dropout < 1.0:
        bad("model.d_dropout", m.d_dropout, "a probability in [0, 1)")
    if not (d.std > 0 and math.isfinite(d.std)):
        bad("dataset.std", d.std, "a number > 0")
    if not math.isfinite(d.mean):
        bad("dataset.mean", d.mean, "a finite number")
    for key, value in (("dataset.radius", d.radius), ("dataset.spacing", d.spacing)):
        if not (value > 0 and math.isfinite(value)):
            bad(key, value, "a number > 0")
    if len(d.range) != 2 or not d.range[0] < d.range[1]:
        bad("dataset.range", d.range, "[low, high] with low < high, e.g. [-1, 1] or [0, 1]")
    if t.eval_every is not None and (t.eval_every < 1 or t.eval_every % max(1, t.log_every)):
        bad(
            "trainer.eval_every",
            t.eval_every,
            f"a multiple of trainer.log_every={t.log_every} (scores go into the logged rows), or null",
        )
    if t.devices > 1 and t.batch_size % t.devices:
        bad(
            "trainer.batch_size", t.batch_size, f"a multiple of trainer.devices={t.devices} (the global batch is split)"
        )
    if t.ema is not None and not 0.0 < t.ema < 1.0:
        bad("trainer.ema", t.ema, "a decay in (0, 1) such as 0.999, or null for no EMA")
    if cfg.checkpoints.keep_last is not None and cfg.checkpoints.keep_last < 1:
        bad("checkpoints.keep_last", cfg.checkpoints.keep_last, "an integer >= 1, or null to keep all")
    if cfg.loss.gp_weight < 0:
        bad("loss.gp_weight", cfg.loss.gp_weight, "a number >= 0")
    if not (cfg.loss.r1_gamma >= 0 and math.isfinite(cfg.loss.r1_gamma)):
        bad("loss.r1_gamma", cfg.loss.r1_gamma, "a number >= 0 (0: no R1 penalty)")
    if not 0.0 <= cfg.optim.decay_start < 1.0:
        bad("optim.decay_start", cfg.optim.decay_start, "a fraction of the run in [0, 1)")
    if t.ema_half_life is not None and not (t.ema_half_life > 0 and math.isfinite(t.ema_half_life)):
        bad("trainer.ema_half_life", t.ema_half_life, "a number of images > 0, e.g. 10000, or null")
    if t.ema_warmup is not None and not (t.ema_warmup > 0 and math.isfinite(t.ema_warmup)):
        bad("trainer.ema_warmup", t.ema_warmup, "a number > 0 such as 0.05, or null for none")
    if t.ema is not None and t.ema_half_life is not None:
        problems.append(
            f"trainer.ema={t.ema} and trainer.ema_half_life={t.ema_half_life} are both set; accepted: one of them"
        )
    if t.ema_warmup is not None and t.ema_half_life is None:
        bad("trainer.ema_warmup", t.ema_warmup, "null unless trainer.ema_half_life is set")
    for name in t.augment:
        if name not in AUGMENTS:
            bad("trainer.augment", name, f"a list of {', '.join(AUGMENTS)} (e.g. [translation,cutout]), or []")
    p = t.augment_p
    if p != "auto" and (isinstance(p, (bool, str)) or not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0)):
        bad("trainer.augment_p", p, "a probability in [0, 1], or auto (adaptive, Karras et al. 2020)")
    if not 0.0 < t.augment_target < 1.0:
        bad("trainer.augment_target", t.augment_target, "a number in (0, 1), e.g. 0.6 (ADA's)")
    if t.batch_gpu is not None and t.batch_gpu < 1:
        bad("trainer.batch_gpu", t.batch_gpu, "an integer >= 1 that divides the per-device batch, or null")
    if t.threads is not None and t.threads < 1:
        bad("trainer.threads", t.threads, "an integer >= 1, or null (auto: timed on a CPU)")
    return problems


def _optim_problems(cfg: RunConfig) -> list[str]:
    problems = Problems()
    bad = problems.bad

    o = cfg.optim
    for prefix, spec in (("optim", o), ("optim.g", o.g), ("optim.d", o.d)):
        if spec.lr is not None and not (spec.lr > 0 and math.isfinite(spec.lr)):
            bad(f"{prefix}.lr", spec.lr, "a learning rate > 0")
        if spec.betas is not None and (len(spec.betas) != 2 or not all(0.0 <= b < 1.0 for b in spec.betas)):
            bad(f"{prefix}.betas", spec.betas, "two numbers in [0, 1)")
        if spec.momentum is not None and not 0.0 <= spec.momentum < 1.0:
            bad(f"{prefix}.momentum", spec.momentum, "a number in [0, 1)")
        if spec.weight_decay is not None and spec.weight_decay < 0:
            bad(f"{prefix}.weight_decay", spec.weight_decay, "a number >= 0")
    return problems


LOGGERS = ("csv", "tensorboard")
ADAPTIVE_LOSSES = ("bce", "minimax", "hinge")  # whose D scores are logits or margins around 0


def _logger_problems(cfg: RunConfig) -> list[str]:
    problems = [
        _bad("trainer.loggers", name, ", ".join(LOGGERS)) for name in cfg.trainer.loggers if name not in LOGGERS
    ]
    if "tensorboard" in cfg.trainer.loggers:
        try:
            import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)
        except ImportError:
            problems.append(
                "trainer.loggers includes tensorboard, but the tensorboard package is not installed; "
                "accepted: pip install 'ganctl[tensorboard]', or trainer.loggers=[csv]"
            )
    return problems


def _combination_problems(cfg: RunConfig) -> list[str]:
    """Combinations that run but compute something wrong, or cannot run here."""
    problems = Problems()
    bad = problems.bad

    t, m, d = cfg.trainer, cfg.model, cfg.dataset
    kind = info(d).kind
    if cfg.loss.name == "wgan_gp" and m.d_norm == "batch":
        problems.append(
            "loss=wgan_gp with model.d_norm=batch is invalid: the gradient penalty is per sample "
            "and batch norm mixes samples; accepted: model.d_norm=none or layer"
        )
    if d.name == "folder" and not d.path:
        problems.append("dataset=folder needs dataset.path=DIR, the folder of images to train on")
    if d.labels != "none" and d.name != "folder":
        bad("dataset.labels", d.labels, f"none for dataset={d.name} (subfolders is for dataset=folder)")
    if m.d_features == "moments" and kind != POINTS_1D:
        bad("model.d_features", m.d_features, "'moments' only with dataset=gaussian1d, else 'none'")
    metric = t.eval_metric
    if t.eval_features == "inception":
        # The Inception weights are a download or a user's file, checked when `ganctl eval` runs;
        # a run must not fail at its first evaluation, after minutes of training, for want of them.
        bad(
            "trainer.eval_features",
            "inception",
            "auto, ganctl or selfsup during training (score Inception FID after the run: ganctl eval RUN "
            "--features inception)",
        )
    elif t.eval_features == "ganctl" and kind == IMAGES and not has_labels(d):
        bad("trainer.eval_features", "ganctl", "selfsup or auto for data without class labels")
    if kind == POINTS_2D:
        # The in-training evaluator scores images (FD) or the 1-D Gaussian (W1); the mixtures' mode
        # counts come from `ganctl eval` after the run.
        if t.eval_every is not None:
            bad("trainer.eval_every", t.eval_every, f"null for dataset={d.name} (score the run with ganctl eval)")
        if metric != "auto":
            bad("trainer.eval_metric", metric, f"auto for dataset={d.name}")
    elif metric != "auto" and (metric == "w1") != (kind == POINTS_1D):
        bad("trainer.eval_metric", metric, "fd or kid for images, w1 for dataset=gaussian1d, or auto")
    if m.conditional and not has_labels(d):
        bad(
            "model.conditional",
            True,
            "false for this dataset (no class labels); conditional GANs train on mnist, fashion_mnist, svhn, "
            "cifar10, or dataset=folder with dataset.labels=subfolders",
        )
    if d.xflip and kind != IMAGES:
        bad("dataset.xflip", True, f"false for dataset={d.name} (mirroring doubles a set of images)")
    if t.augment and kind != IMAGES:
        bad("trainer.augment", list(t.augment), f"[] for dataset={d.name} (augmentation transforms images)")
    if t.augment_p == "auto" and not t.augment:
        bad("trainer.augment_p", "auto", "a number unless trainer.augment lists transforms, e.g. [translation]")
    if t.augment_p == "auto" and cfg.loss.name not in ADAPTIVE_LOSSES:
        # r_t = E[sign(D(real))] needs 0 to be D's boundary between real and fake: a critic's scores
        # have no fixed offset (wgan_gp), LSGAN's targets are 0 and 1.
        auto = ", ".join(ADAPTIVE_LOSSES)
        bad("trainer.augment_p", "auto", f"a fixed number with loss={cfg.loss.name} (auto: {auto})")
    per_device = t.batch_size // max(1, t.devices)
    if t.batch_gpu is not None and t.batch_gpu >= 1 and per_device % t.batch_gpu:
        bad(
            "trainer.batch_gpu",
            t.batch_gpu,
            f"a divisor of the per-device batch {per_device} (trainer.batch_size={t.batch_size} over "
            f"{t.devices} device(s)), or null",
        )
    if m.arch in IMAGE_MODELS and kind != IMAGES:
        bad("model.arch", m.arch, f"mlp for dataset={d.name} ({m.arch} needs images)")
    elif m.arch in IMAGE_MODELS:
        side = info(d).shape[-1] if info(d).shape else d.resolution
        accepted = image_side_problem(m.arch, side)
        if accepted is not None:
            key = "dataset.resolution" if d.name == "folder" else "model.arch"
            bad(key, side if d.name == "folder" else m.arch, accepted)
    if kind == POINTS_2D and m.g_out != "none":
        # tanh stops at +-1 and sigmoid at [0, 1]; the modes sit out to radius 2 (ring8), 4 (grid25).
        reach = float(abs(mixture_modes(d)).max() + 3 * d.std)
        if m.g_out == "sigmoid" or reach >= 1.0:
            problems.append(
                f"model.g_out={m.g_out} cannot reach dataset={d.name}'s modes (out to {reach:.3g}); "
                "accepted: model.g_out=none (a linear output, as in the papers)"
            )
    if m.g_out == "sigmoid" and d.range[0] < 0 and kind == IMAGES:
        problems.append(
            f"model.g_out=sigmoid cannot reach dataset.range={list(d.range)}; "
            "accepted: dataset.range=[0,1] with a sigmoid output, or model.g_out=tanh"
        )
    if cfg.loss.d_batch == "shuffled" and cfg.loss.name not in ("bce", "minimax"):
        bad("loss.d_batch", "shuffled", "'shuffled' only with loss=bce or minimax, else 'separate'")
    if t.backward == "manual":
        reason = unsupported(cfg)
        if reason is not None:
            problems.append(
                f"trainer.backward=manual does not support {reason}; "
                "accepted: trainer.backward=auto or autograd for this run"
            )
    return problems


def training_device(cfg: RunConfig) -> torch.device:
    """The device a run trains on, with the options that depend on it checked."""
    device = resolve_device(cfg.trainer.device)
    if cfg.trainer.precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"trainer.precision=fp16 needs a CUDA device, this run uses {device.type}; accepted here: fp32, bf16"
        )
    if cfg.trainer.precision == "bf16" and device.type == "cuda" and not native_bf16(device):
        # Before compute capability 8.0 bf16 is emulated: slower than fp32, for no gain.
        raise ConfigError(
            f"trainer.precision=bf16 on {torch.cuda.get_device_name(device)} would run emulated "
            "(no bf16 units before compute capability 8.0); accepted here: fp16, fp32"
        )
    return device


def check_data(cfg: RunConfig) -> None:
    """The dataset is there (or downloadable) and holds at least one batch."""
    size = dataset_size(cfg.dataset)
    if cfg.trainer.batch_size > size:
        raise DataError(
            f"trainer.batch_size={cfg.trainer.batch_size} is larger than the dataset "
            f"({cfg.dataset.name} {cfg.dataset.split}: {size} samples); accepted: 1..{size}"
        )
