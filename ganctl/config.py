"""The typed schema of a run config: a leaf that imports nothing of ganctl.

Values are checked against the registries in ganctl.training.validate, where they are visible.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf

DATA_ROOT = "~/.cache/ganctl/data"


def default_data_root() -> str:
    """Where datasets are read and downloaded unless dataset.root says: $GANCTL_DATA, else DATA_ROOT."""
    return os.environ.get("GANCTL_DATA", DATA_ROOT)


@dataclass
class DatasetConfig:
    name: str = "gaussian1d"
    # Read when the config is composed (or the dataclass built), so the YAMLs need no root of their own.
    root: str = field(default_factory=default_data_root)
    split: str = "train"
    download: bool = True
    # Pixel values are mapped from [0, 255] onto this interval on the device.
    range: List[float] = field(default_factory=lambda: [-1.0, 1.0])
    # gaussian1d's target; `std` is also each Gaussian's in the 2-D mixtures (ring8, grid25)
    mean: float = 4.0
    std: float = 1.25
    samples_per_epoch: int = 100_000
    # 2-D mixtures only: the circle of ring8's modes, the distance between grid25's neighbours
    radius: float = 2.0
    spacing: float = 2.0
    # dataset=folder only: the image folder, the square side images are resized to, 1 or 3
    # channels (auto: 1 when every image is greyscale), class labels from the first subfolders
    path: Optional[str] = None
    resolution: int = 64
    channels: str = "auto"
    labels: str = "none"
    # Images only: the left-right mirror of every image is a sample too, doubling the dataset
    # (StyleGAN2-ADA's --mirror); for data whose meaning survives a flip (faces, not digits).
    xflip: bool = False


@dataclass
class ModelConfig:
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
    # Miyato et al. 2018: every weight layer of D divided by its largest singular value
    d_spectral_norm: bool = False
    # G(z, y) and a projection D(x, y) on the dataset's class labels (Miyato & Koyama 2018)
    conditional: bool = False


@dataclass
class LossConfig:
    name: str = "bce"
    gp_weight: float = 10.0
    d_batch: str = "separate"
    # Mescheder et al. 2018's R1: (r1_gamma / 2) E|grad_x D(x)|^2 on real batches; computed every
    # r1_every-th D update and scaled by r1_every (StyleGAN2's lazy regularisation)
    r1_gamma: float = 0.0
    r1_every: int = 1


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
    schedule: str = "constant"  # constant, or linear: decay to 0 at the last step from decay_start
    decay_start: float = 0.5  # the fraction of the run after which linear decay begins
    g: OptimOverride = field(default_factory=OptimOverride)
    d: OptimOverride = field(default_factory=OptimOverride)


@dataclass
class TrainerConfig:
    steps: Optional[int] = None
    epochs: Optional[float] = None
    # A time budget: a new run times its first updates and sets `steps` from it (training/budget.py)
    minutes: Optional[float] = None
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
    channels_last: Optional[bool] = None  # null: auto (timed for conv nets)
    threads: Optional[int] = None  # the run's intra-op threads; null: auto (on a CPU, 1 or the process's, timed)
    ema: Optional[float] = None
    # G_ema by half-life in images (StyleGAN2-ADA's ema_kimg x 1000), capped at warm-up x images
    # seen so far so that early averages do not hold on to the random initial weights
    ema_half_life: Optional[float] = None
    ema_warmup: Optional[float] = None
    # DiffAugment/ADA transforms of D's inputs: any of xflip, rotate90, color, translation, cutout
    augment: List[str] = field(default_factory=list)
    # each transform's probability per sample: a number in [0, 1], or "auto" (ADA steers it from 0)
    augment_p: Any = 1.0
    # auto's target for E[sign(D(real))]: p rises while D's real scores are more often positive
    augment_target: float = 0.6
    # per-device batch computed in chunks of batch_gpu with accumulated gradients; null: in one piece
    batch_gpu: Optional[int] = None
    devices: int = 1
    eval_every: Optional[int] = None
    eval_samples: int = 2000
    eval_metric: str = "auto"
    eval_features: str = "auto"
    check_replicas: bool = False
    loggers: List[str] = field(default_factory=lambda: ["csv"])


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


def to_run_config(cfg: DictConfig | dict) -> RunConfig:
    """Turn a composed (Hydra) config or a checkpoint's plain dict into a typed RunConfig."""
    node = OmegaConf.merge(OmegaConf.structured(RunConfig), _without_hydra(cfg))
    return OmegaConf.to_object(node)  # type: ignore[return-value]


# Keys that older checkpoints carry and the schema no longer has, dropped when they are read.
RETIRED = {"model": ("name",)}  # model.name was never read: model.arch picks the networks


def _without_hydra(cfg: Any) -> Any:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    plain = {k: v for k, v in dict(cfg).items() if k != "hydra"}
    for group, keys in RETIRED.items():
        if isinstance(plain.get(group), dict):
            plain[group] = {k: v for k, v in plain[group].items() if k not in keys}
    return plain


def to_dict(cfg: RunConfig) -> dict:
    """Plain builtins only, so checkpoints load with torch.load(weights_only=True)."""
    return asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config dict as {"optim.lr": 0.0002, ...}: how ganctl names keys in messages."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
