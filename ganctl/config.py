"""Typed schema of a run config, registered with Hydra's ConfigStore, and its validation."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf

from ganctl.errors import ConfigError


@dataclass
class DatasetConfig:
    name: str = "gaussian1d"
    root: str = "~/.cache/ganctl/data"
    split: str = "train"
    download: bool = True
    # Pixel values are mapped from [0, 255] onto this interval on the device.
    range: List[float] = field(default_factory=lambda: [-1.0, 1.0])
    # gaussian1d only
    mean: float = 4.0
    std: float = 1.25
    samples_per_epoch: int = 100_000


@dataclass
class ModelConfig:
    name: str = "mlp"
    arch: str = "mlp"
    z_dim: int = 64
    latent: str = "normal"
    init: str = "default"
    g_hidden: List[int] = field(default_factory=lambda: [256, 256])
    g_act: str = "relu"
    g_out: str = "tanh"
    g_norm: str = "none"
    d_hidden: List[int] = field(default_factory=lambda: [256, 256])
    d_act: str = "leaky_relu"
    d_dropout: float = 0.0
    d_norm: str = "none"
    d_features: str = "none"
    width: int = 64


@dataclass
class LossConfig:
    name: str = "bce"
    gp_weight: float = 10.0
    d_batch: str = "separate"


@dataclass
class OptimOverride:
    """Per-network settings; a null field inherits the shared value in OptimConfig."""

    name: Optional[str] = None
    lr: Optional[float] = None
    betas: Optional[List[float]] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 2e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.0
    weight_decay: float = 0.0
    impl: str = "auto"
    g: OptimOverride = field(default_factory=OptimOverride)
    d: OptimOverride = field(default_factory=OptimOverride)


@dataclass
class TrainerConfig:
    steps: Optional[int] = None
    epochs: Optional[float] = None
    batch_size: int = 64
    d_steps: int = 1
    g_steps: int = 1
    log_every: int = 100
    sample_every: int = 1000
    ckpt_every: int = 5000
    num_samples: int = 64
    device: str = "auto"
    progress: bool = True
    on_nan: str = "stop"
    max_nan_skips: int = 10
    compile: bool = False
    compile_mode: str = "default"
    precision: str = "fp32"
    cpu_matmul: str = "auto"
    backward: str = "auto"
    channels_last: bool = False
    ema: Optional[float] = None
    devices: int = 1
    eval_every: Optional[int] = None
    eval_samples: int = 2000
    eval_metric: str = "auto"
    check_replicas: bool = False


@dataclass
class CheckpointsConfig:
    keep_last: Optional[int] = None


@dataclass
class RunConfig:
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoints: CheckpointsConfig = field(default_factory=CheckpointsConfig)
    resume: Optional[str] = None


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=RunConfig)


def to_run_config(cfg: DictConfig | dict) -> RunConfig:
    """Turn a composed (Hydra) config or a checkpoint's plain dict into a typed RunConfig."""
    node = OmegaConf.merge(OmegaConf.structured(RunConfig), _without_hydra(cfg))
    return OmegaConf.to_object(node)  # type: ignore[return-value]


def _without_hydra(cfg: Any) -> Any:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in dict(cfg).items() if k != "hydra"}


def to_dict(cfg: RunConfig) -> dict:
    """Plain builtins only, so checkpoints load with torch.load(weights_only=True)."""
    return asdict(cfg)


# Choices accepted by each key; the registries in the implementing modules are the truth,
# these names are imported from there so a new entry shows up in the error text.
def _choices() -> dict[str, list[str]]:
    from ganctl.data import DATASETS, SPLITS
    from ganctl.losses import LOSSES
    from ganctl.manual_step import BACKWARDS
    from ganctl.models import ACTIVATIONS, INITS, MODELS, NORMS, OUTPUTS
    from ganctl.models.linear import CPU_MATMULS
    from ganctl.optim import IMPLS, OPTIMIZERS

    return {
        "dataset.name": sorted(DATASETS),
        "dataset.split": list(SPLITS),
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
        "trainer.on_nan": ["stop", "skip"],
        "trainer.precision": ["fp32", "bf16", "fp16"],
        "trainer.cpu_matmul": list(CPU_MATMULS),
        "trainer.backward": list(BACKWARDS),
        "trainer.compile_mode": ["default", "reduce-overhead", "max-autotune"],
        "trainer.eval_metric": ["auto", "fd", "w1"],
    }


def _get(cfg: RunConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: RunConfig) -> None:
    """Check ranges and cross-field rules; raise one ConfigError listing every problem."""
    problems: list[str] = []

    def bad(key: str, value: Any, accepted: str) -> None:
        problems.append(f"{key}={value!r} is invalid; accepted: {accepted}")

    for key, options in _choices().items():
        value = _get(cfg, key)
        if value is None and key in ("optim.g.name", "optim.d.name"):
            continue
        if value not in options:
            bad(key, value, ", ".join(options))

    t, m, o, d = cfg.trainer, cfg.model, cfg.optim, cfg.dataset
    positive_ints = {
        "trainer.batch_size": t.batch_size, "trainer.d_steps": t.d_steps,
        "trainer.g_steps": t.g_steps, "trainer.log_every": t.log_every,
        "trainer.sample_every": t.sample_every, "trainer.ckpt_every": t.ckpt_every,
        "trainer.num_samples": t.num_samples, "model.z_dim": m.z_dim, "model.width": m.width,
        "dataset.samples_per_epoch": d.samples_per_epoch, "trainer.max_nan_skips": t.max_nan_skips,
        "trainer.devices": t.devices, "trainer.eval_samples": t.eval_samples,
    }
    for key, value in positive_ints.items():
        if value < 1:
            bad(key, value, "an integer >= 1")
    if t.steps is None and t.epochs is None:
        problems.append("trainer.steps and trainer.epochs are both null; set one of them")
    if t.steps is not None and t.steps < 1:
        bad("trainer.steps", t.steps, "an integer >= 1 (or null to use trainer.epochs)")
    if t.epochs is not None and not (t.epochs > 0 and math.isfinite(t.epochs)):
        bad("trainer.epochs", t.epochs, "a number > 0 (or null to use trainer.steps)")
    for key, widths in (("model.g_hidden", m.g_hidden), ("model.d_hidden", m.d_hidden)):
        if any(w < 1 for w in widths):
            bad(key, widths, "a list of layer widths >= 1")
    if not 0.0 <= m.d_dropout < 1.0:
        bad("model.d_dropout", m.d_dropout, "a probability in [0, 1)")
    if not (d.std > 0 and math.isfinite(d.std)):
        bad("dataset.std", d.std, "a number > 0")
    if not math.isfinite(d.mean):
        bad("dataset.mean", d.mean, "a finite number")
    if len(d.range) != 2 or not d.range[0] < d.range[1]:
        bad("dataset.range", d.range, "[low, high] with low < high, e.g. [-1, 1] or [0, 1]")
    if t.eval_every is not None and (t.eval_every < 1 or t.eval_every % max(1, t.log_every)):
        bad("trainer.eval_every", t.eval_every,
            f"a multiple of trainer.log_every={t.log_every} (scores go into the logged rows), or null")
    if t.devices > 1 and t.batch_size % t.devices:
        bad("trainer.batch_size", t.batch_size, f"a multiple of trainer.devices={t.devices} (the global batch is split)")
    if t.ema is not None and not 0.0 < t.ema < 1.0:
        bad("trainer.ema", t.ema, "a decay in (0, 1) such as 0.999, or null for no EMA")
    if cfg.checkpoints.keep_last is not None and cfg.checkpoints.keep_last < 1:
        bad("checkpoints.keep_last", cfg.checkpoints.keep_last, "an integer >= 1, or null to keep all")
    if cfg.loss.gp_weight < 0:
        bad("loss.gp_weight", cfg.loss.gp_weight, "a number >= 0")

    for prefix, spec in (("optim", o), ("optim.g", o.g), ("optim.d", o.d)):
        if spec.lr is not None and not (spec.lr > 0 and math.isfinite(spec.lr)):
            bad(f"{prefix}.lr", spec.lr, "a learning rate > 0")
        if spec.betas is not None and (
            len(spec.betas) != 2 or not all(0.0 <= b < 1.0 for b in spec.betas)
        ):
            bad(f"{prefix}.betas", spec.betas, "two numbers in [0, 1)")
        if spec.momentum is not None and not 0.0 <= spec.momentum < 1.0:
            bad(f"{prefix}.momentum", spec.momentum, "a number in [0, 1)")
        if spec.weight_decay is not None and spec.weight_decay < 0:
            bad(f"{prefix}.weight_decay", spec.weight_decay, "a number >= 0")

    if problems:  # cross-field rules below only make sense between valid fields
        raise ConfigError(*problems)

    # Cross-field rules: combinations that run but compute something wrong.
    if cfg.loss.name == "wgan_gp" and m.d_norm == "batch":
        problems.append(
            "loss=wgan_gp with model.d_norm=batch is invalid: the gradient penalty is per sample "
            "and batch norm mixes samples; accepted: model.d_norm=none or layer"
        )
    if m.d_features == "moments" and d.name != "gaussian1d":
        bad("model.d_features", m.d_features, "'moments' only with dataset=gaussian1d, else 'none'")
    metric = t.eval_metric
    if metric != "auto" and (metric == "w1") != (d.name == "gaussian1d"):
        bad("trainer.eval_metric", metric, "fd for images, w1 for dataset=gaussian1d, or auto")
    if m.arch == "dcgan" and d.name == "gaussian1d":
        bad("model.arch", m.arch, "mlp for dataset=gaussian1d (dcgan needs images)")
    if m.g_out == "sigmoid" and d.range[0] < 0 and d.name != "gaussian1d":
        problems.append(
            f"model.g_out=sigmoid cannot reach dataset.range={list(d.range)}; "
            "accepted: dataset.range=[0,1] with a sigmoid output, or model.g_out=tanh"
        )
    if cfg.loss.d_batch == "shuffled" and cfg.loss.name not in ("bce", "minimax"):
        bad("loss.d_batch", "shuffled", "'shuffled' only with loss=bce or minimax, else 'separate'")
    if t.backward == "manual":
        from ganctl.manual_step import unsupported

        reason = unsupported(cfg)
        if reason is not None:
            problems.append(f"trainer.backward=manual does not support {reason}; "
                            "accepted: trainer.backward=auto or autograd for this run")
    if t.cpu_matmul == "onednn":
        from ganctl.models.linear import onednn_available

        if not onednn_available():
            bad("trainer.cpu_matmul", "onednn", "auto or blas (this PyTorch build has no oneDNN)")

    if problems:
        raise ConfigError(*problems)
