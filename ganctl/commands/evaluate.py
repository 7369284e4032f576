"""ganctl eval: score a generator (or an .npz of samples) against real data; `ganctl eval fit` trains
the feature net."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from ganctl import features, images, inception, kinds
from ganctl.commands import options
from ganctl.config import DatasetConfig, default_data_root
from ganctl.data import DATASETS as RECORDS
from ganctl.data import SPLITS
from ganctl.devices import resolve_device
from ganctl.errors import ArgumentParser, ConfigError, DataError
from ganctl.features import PR_K, image_metrics
from ganctl.files import atomic_write
from ganctl.generation import generate, seeded
from ganctl.training.checkpoint import LoadedGenerator

# The named datasets and a folder of images (--data-path); .npz samples need an image dataset.
DATASETS = tuple(name for name, d in RECORDS.items() if d.shape is not None) + ("folder",)
FEATURES = ("auto", features.CLASSES, features.SELFSUP, "inception")
IMAGE_SHAPES = {name: RECORDS[name].shape for name in features.IMAGE_DATASETS}
SCORED_IMAGES = (*IMAGE_SHAPES, "folder")  # what an .npz of samples can be scored against


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="ganctl eval",
        description="Score a generator's samples against real data. "
        "`ganctl eval fit DATASET` (re)trains the feature network.",
    )
    p.add_argument(
        "target",
        help="a .pt checkpoint, a run folder (its checkpoints/last.pt) or an .npz "
        "with uint8 arr_0 (N x H x W or N x H x W x C; needs --dataset)",
    )
    p.add_argument("-n", type=int, default=10000, help="number of generated samples (default 10000)")
    p.add_argument(
        "-o", "--output", default=None, help="metrics JSON (default: <checkpoint or npz stem>_eval.json beside it)"
    )
    p.add_argument(
        "--dataset",
        default=None,
        help=f"{', '.join(DATASETS)} (default: the checkpoint's); folder: with --data-path",
    )
    p.add_argument(
        "--data-path",
        default=None,
        help="dataset=folder: the folder of images (default: the checkpoint's dataset.path); its pack is "
        "cached under --data-root's folder-cache/ as training caches it",
    )
    p.add_argument(
        "--data-labels",
        default=None,
        help="dataset=folder: none or subfolders, as dataset.labels (default: the checkpoint's, else none)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding MNIST/, FashionMNIST/, SVHN/ or "
        "cifar-10-batches-py/ (default: the checkpoint's "
        "dataset.root, else $GANCTL_DATA or ~/.cache/ganctl/data)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="real split to compare with: train, test (svhn: extra); default: the checkpoint's, else train",
    )
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--batch-size", type=int, default=500, help="samples generated and embedded at once (default 500)")
    p.add_argument("--no-ema", action="store_true", help="score the raw generator even if EMA weights exist")
    p.add_argument(
        "--features",
        default="auto",
        help="auto (default: ganctl where the data has class labels, else selfsup), ganctl (the cached "
        "small classifier), selfsup (a rotation-prediction net fitted on the data, for unlabelled "
        "images) or inception (the standard FID Inception-v3: FID, KID, precision, recall; needs "
        "torch-fidelity, pip install ganctl[fid])",
    )
    p.add_argument(
        "--inception-weights",
        default=None,
        metavar="PATH",
        help=f"the FID Inception weights file for --features inception (default ${inception.ENV}, else "
        f"~/.cache/ganctl/inception/{inception.WEIGHTS_NAME}, else downloaded there once)",
    )
    p.add_argument(
        "--nn",
        action="store_true",
        help="instead of scoring, draw a nearest-neighbour sheet (default <checkpoint or npz stem>_nn.png, "
        "or -o FILE.png): each sample beside its closest real images, to see that G does not copy them",
    )
    p.add_argument("--nn-rows", type=int, default=8, help="samples on the --nn sheet, one row each (default 8)")
    p.add_argument("--nn-k", type=int, default=5, help="nearest real images shown per sample (default 5)")
    options.add_truncation(p)
    p.add_argument(
        "--pr-samples",
        type=int,
        default=5000,
        help="samples per side for precision/recall, which costs O(n^2) (default 5000)",
    )
    return p


def build_fit_parser() -> ArgumentParser:
    p = ArgumentParser(prog="ganctl eval fit", description="Train (or retrain) the feature network on real data.")
    p.add_argument("dataset", help=", ".join(features.IMAGE_DATASETS))
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding MNIST/, FashionMNIST/, SVHN/ or "
        "cifar-10-batches-py/ (default $GANCTL_DATA or ~/.cache/ganctl/data)",
    )
    p.add_argument("--split", default="train", help="train, test (svhn: extra) (default train)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed (default 0)")
    return p


def check_choice(flag: str, value: str | None, accepted: tuple[str, ...]) -> None:
    if value is not None and value not in accepted:
        raise ConfigError(f"{flag} {value!r} is invalid; accepted: {', '.join(accepted)}")


def fit_main(argv: list[str]) -> None:
    args = build_fit_parser().parse_args(argv)
    check_choice("dataset", args.dataset, features.IMAGE_DATASETS)
    check_choice("--split", args.split, SPLITS)
    if args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs} is invalid; accepted: an integer >= 1")
    cfg = DatasetConfig(name=args.dataset, root=args.data_root or default_data_root(), split=args.split)
    model = features.fit(cfg, resolve_device(args.device, key="--device"), epochs=args.epochs, seed=args.seed)
    print(f"ganctl: feature net {cfg.name}/{cfg.split}: held-out accuracy {model.accuracy:.2%}; {model.path}")


def load_npz(path: Path, dataset: str) -> torch.Tensor:
    """uint8 arr_0 of N x H x W or N x H x W x C -> N x C x H x W, checked against the dataset's shape
    (a folder's shape follows the samples: square images of 1 or 3 channels)."""
    try:
        with np.load(path) as z:
            if "arr_0" not in z:
                raise ConfigError(f"{path} has no arr_0; accepted: an .npz whose arr_0 holds uint8 images")
            array = z["arr_0"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({str(exc)[:120]})") from None
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise ConfigError(
            f"{path}: arr_0 is {array.dtype} of shape {array.shape}; accepted: uint8 N x H x W or N x H x W x C"
        )
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
    if dataset == "folder":
        if x.shape[2] != x.shape[3] or x.shape[1] not in (1, 3):
            raise ConfigError(
                f"{path}: images are {tuple(x.shape[1:])} (C x H x W); a folder is scored at a square "
                "resolution; accepted: N x R x R or N x R x R x 3"
            )
        return x
    expected = IMAGE_SHAPES[dataset]
    if tuple(x.shape[1:]) != expected:
        h, w = expected[1:]
        raise ConfigError(
            f"{path}: images are {tuple(x.shape[1:])} (C x H x W); {dataset} needs "
            f"{h} x {w}" + (" x 3" if expected[0] == 3 else " (or x 1)")
        )
    return x


def default_output(source: Path) -> Path:
    return source.with_name(f"{source.stem}_eval.json")


NN_CHUNK = 2048  # real images per distance block: 2048 x 3072 float64 is 50 MB for CIFAR-10


def nearest_real(queries: torch.Tensor, real: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each uint8 query image, the indices and L2 pixel distances of its k nearest real images, nearest first.

    |q - r|^2 = |q|^2 - 2 q.r + |r|^2 over blocks of NN_CHUNK real images, keeping a running top k,
    so 60,000 training images never sit in memory as floats at once. float64 keeps the sums of
    squared 0-255 pixels exact integers: a copied training image comes out at distance 0, not 1e-3.
    """
    q = queries.flatten(1).double()
    qq = (q * q).sum(1, keepdim=True)
    best_d = torch.empty(len(q), 0, dtype=torch.float64)
    best_i = torch.empty(len(q), 0, dtype=torch.long)
    for start in range(0, len(real), NN_CHUNK):
        block = real[start : start + NN_CHUNK].flatten(1).double()
        d2 = (qq - 2 * q @ block.T + (block * block).sum(1)).clamp_(min=0)
        index = torch.arange(start, start + len(block)).expand(len(q), -1)
        d2, index = torch.cat([best_d, d2], 1), torch.cat([best_i, index], 1)
        top = d2.topk(min(k, d2.shape[1]), dim=1, largest=False, sorted=True)
        best_d, best_i = top.values, index.gather(1, top.indices)
    return best_i, best_d.sqrt()


def asked_classes(model, n: int) -> torch.Tensor | None:
    """A conditional generator's labels for n samples: every class in equal blocks (None otherwise).
    Its class_accuracy is how often the feature net agrees with the class asked for."""
    return None if model is None else options.asked_labels(model, n, None)


def nn_sheet(args, x: torch.Tensor | None, model, dcfg: DatasetConfig, out_path: Path) -> None:
    """--nn: `args.nn_rows` samples, each beside its `args.nn_k` nearest real images, as one PNG."""
    if x is None:
        z = seeded(args.nn_rows, model.cfg.model, args.seed, args.truncation)
        to_pixels = lambda b: images.to_uint8(b, model.cfg.dataset.range)  # noqa: E731
        x = generate(model.G, z, args.batch_size, convert=to_pixels, labels=asked_classes(model, args.nn_rows))
    samples = x[: args.nn_rows]
    real = features.real_images(dcfg)  # a folder's pack is read mapped, not copied
    if tuple(real.shape[1:]) != tuple(samples.shape[1:]):
        raise ConfigError(
            f"the samples are {tuple(samples.shape[1:])} (C x H x W) but {dcfg.name} {dcfg.split} images are "
            f"{tuple(real.shape[1:])}; accepted: samples of the dataset's shape"
        )
    k = min(args.nn_k, len(real))
    index, dist = nearest_real(samples, real, k)
    # For scale: how far real images lie from their nearest other real image (column 0 is the image itself).
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(args.seed))[: args.nn_rows]
    reference = nearest_real(real[pick], real, 2)[1][:, -1] if len(real) > 1 else torch.zeros(1)
    title = f"sample | {k} nearest {dcfg.name} {dcfg.split} images (L2, pixels 0-255)"
    images.save_png(images.nn_sheet(samples, real[index], dist, title), out_path)
    print(
        f"nearest real image of {len(samples)} samples: L2 median {dist[:, 0].median():.0f} (min "
        f"{dist[:, 0].min():.0f}); real images to their nearest other: median {reference.median():.0f} "
        f"({dcfg.name} {dcfg.split}, {len(real)} images; a copy is 0)  -> {out_path}"
    )


def check_args(args) -> None:
    check_choice("--dataset", args.dataset, DATASETS)
    check_choice("--split", args.split, SPLITS)
    check_choice("--features", args.features, FEATURES)
    check_choice("--data-labels", args.data_labels, ("none", "subfolders"))
    options.at_least("-n", args.n, 2, "a number of samples")
    options.at_least("--batch-size", args.batch_size, 1)
    if args.pr_samples <= PR_K:
        raise ConfigError(f"--pr-samples {args.pr_samples} is invalid; accepted: an integer > {PR_K}")
    options.at_least("--nn-rows", args.nn_rows, 1)
    options.at_least("--nn-k", args.nn_k, 1)
    options.check_truncation(args)
    if args.nn and args.output is not None and Path(args.output).suffix.lower() != ".png":
        raise ConfigError(f"-o {args.output}: --nn draws a picture; accepted: -o FILE.png")
    if args.features == "inception" and not args.nn:
        inception.check_library()  # fail before any work when the library is missing
    elif args.inception_weights is not None:
        raise ConfigError("--inception-weights is read by --features inception only; accepted: both, or neither")
    if args.output is not None and not Path(args.output).parent.is_dir():
        raise ConfigError(f"-o {args.output}: folder {Path(args.output).parent} does not exist; create it first")


def npz_target(args, target: Path) -> tuple[torch.Tensor, DatasetConfig]:
    """The images of an .npz of samples and the dataset they are scored against."""
    if args.dataset is None:
        raise ConfigError(f"{target} is an .npz of samples: pass --dataset; accepted: {', '.join(SCORED_IMAGES)}")
    if args.dataset not in SCORED_IMAGES:
        raise ConfigError(
            f"--dataset {args.dataset} cannot score an .npz of images; accepted: {', '.join(SCORED_IMAGES)}"
        )
    if args.dataset == "folder" and args.data_path is None:
        raise ConfigError("--dataset folder needs --data-path DIR, the folder of real images to score against")
    if not target.is_file():
        raise ConfigError(f"{target} does not exist; pass a checkpoint, a run folder or an .npz of samples")
    x = load_npz(target, args.dataset)[: args.n]
    dcfg = DatasetConfig(name=args.dataset, root=args.data_root or default_data_root(), split=args.split or "train")
    if args.dataset == "folder":
        # channels=auto, as a run packs it by default: the pack is shared with training's
        dcfg = dataclasses.replace(
            dcfg, path=args.data_path, resolution=x.shape[-1], channels="auto", labels=args.data_labels or "none"
        )
    return x, dcfg


def model_target(args, target: Path, device: torch.device) -> tuple[LoadedGenerator, DatasetConfig, int | None]:
    """A checkpoint's generator, the dataset (as --data-root/--split adjust it) and its step."""
    model = options.load_model(args, str(target))
    dcfg = dataclasses.replace(model.cfg.dataset)
    if args.dataset is not None and args.dataset != dcfg.name:
        raise ConfigError(
            f"--dataset {args.dataset} does not match the checkpoint's dataset "
            f"{dcfg.name!r}; accepted: {dcfg.name} (or leave it out)"
        )
    dcfg.root = args.data_root or dcfg.root
    dcfg.split = args.split or dcfg.split
    if dcfg.name == "folder":
        dcfg.path = args.data_path or dcfg.path
        dcfg.labels = args.data_labels or dcfg.labels
    elif args.data_path is not None or args.data_labels is not None:
        flag = "--data-path" if args.data_path is not None else "--data-labels"
        raise ConfigError(f"{flag} is for dataset=folder and the checkpoint trained on {dcfg.name}; leave it out")
    return model, dcfg, model.step


def score_points(args, model: LoadedGenerator, dcfg: DatasetConfig, report: dict) -> str:
    """The 1-D Gaussian's or a mixture's scores of args.n samples, by the dataset's kind."""
    values = generate(model.G, seeded(args.n, model.cfg.model, args.seed, args.truncation), args.batch_size)
    target, result, line = kinds.of(dcfg).score(values, dcfg)
    report.update(n=args.n, target=target, metrics=result)
    return line


def score_inception(args, x: torch.Tensor, dcfg: DatasetConfig, device: torch.device, report: dict) -> str:
    """FID, KID, precision and recall in the FID Inception's pool features, against cached real statistics."""
    net = inception.extractor(args.weights, device)
    real = inception.real_stats(dcfg, args.weights, net, device, args.batch_size)
    result = inception.scores(inception.embed(net, x, device, args.batch_size), real, args.pr_samples, args.seed)
    report.update(
        features="inception",
        inception_weights=args.weights.describe(),
        real_statistics=real.describe(),
        metrics=result,
    )
    weights = "published weights" if args.weights.published else f"weights {args.weights.sha256[:8]}, not published"
    return (
        f"fid {result['fid']:.3f}  kid {result['kid_mean']:.5f} (std {result['kid_std']:.5f})  "
        f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  "
        f"(n {len(x)} vs {real.what}, {real.n} images; Inception {weights})"
    )


def score_images(args, x, model, dcfg: DatasetConfig, device: torch.device, report: dict) -> str:
    """FD, classifier score, precision/recall (or Inception FID) of the samples (drawn when x is None)."""
    labels = None
    if x is None:
        z = seeded(args.n, model.cfg.model, args.seed, args.truncation)
        labels = asked_classes(model, args.n)
        to_pixels = lambda b: images.to_uint8(b, model.cfg.dataset.range)  # noqa: E731
        x = generate(model.G, z, args.batch_size, progress=True, convert=to_pixels, labels=labels)
    if len(x) < 2:
        raise ConfigError(f"{args.target} holds {len(x)} image; accepted: at least 2 samples")
    report["n"] = len(x)
    if args.features == "inception":
        return score_inception(args, x, dcfg, device, report)
    task = features.choose(dcfg, args.features)
    fm = features.load_or_fit(dcfg, device, task=task)
    result = image_metrics(x, fm, device, args.batch_size, args.pr_samples, args.seed, labels=labels)
    report.update(
        features=task,
        feature_net={"path": str(fm.path), "sha256": fm.checksum, "heldout_accuracy": fm.accuracy},
        metrics=result,
    )
    net = f"{dcfg.name}/{dcfg.split}" + (" rotation" if task == features.SELFSUP else "")
    classes = ""
    if task == features.CLASSES:
        classes = (
            f"classifier_score {result['classifier_score']:.3f}  "
            f"classes {result['classes_covered']}/{fm.num_classes} (max share {result['max_class_share']:.3f})  "
        )
    return (
        f"fd {result['fd']:.3f}  kid {result['kid']:.5f} (std {result['kid_std']:.5f})  {classes}"
        f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  "
        + (f"class_accuracy {result['class_accuracy']:.2%}  " if "class_accuracy" in result else "")
        + f"(n {len(x)}, {task} features, feature net {net} acc {fm.accuracy:.2%})"
    )


def main(argv: list[str]) -> None:
    if argv and argv[0] == "fit":
        fit_main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    check_args(args)
    # Found and checked before any sample is drawn: a missing or wrong file is the first thing said.
    scored_by_inception = args.features == "inception" and not args.nn
    args.weights = inception.resolve_weights(args.inception_weights) if scored_by_inception else None
    device = resolve_device(args.device, key="--device")
    target = Path(args.target)
    report: dict = {"source": str(target), "seed": args.seed}
    if target.suffix.lower() == ".npz":
        if args.truncation is not None:
            raise ConfigError(
                f"--truncation draws latents, and {target} holds samples; accepted: a checkpoint or run folder"
            )
        (x, dcfg), model, source = npz_target(args, target), None, target
        report.update(kind="npz")
    else:
        model, dcfg, step = model_target(args, target, device)
        options.check_truncation(args, model)
        x, source = None, model.path
        report.update(kind="checkpoint", step=step, ema=model.ema, truncation=args.truncation)
    if dcfg.name == "folder" and dcfg.split != "train":
        raise ConfigError(f"--split {dcfg.split}: a folder has one split; accepted: train (or leave it out)")
    report.update(dataset=dcfg.name, split=dcfg.split)
    pixels = kinds.of(dcfg).pixels
    if args.nn:
        if not pixels:
            raise ConfigError(
                f"--nn compares images with their nearest real images, and a {dcfg.name} model draws points; "
                f"accepted: an image model ({', '.join(IMAGE_SHAPES)}); for {dcfg.name}, ganctl eval "
                "without --nn scores the samples against the target"
            )
        nn_sheet(args, x, model, dcfg, Path(args.output) if args.output else source.with_name(f"{source.stem}_nn.png"))
        return
    out_path = Path(args.output) if args.output else default_output(source)
    if pixels:
        line = score_images(args, x, model, dcfg, device, report)
    else:
        line = score_points(args, model, dcfg, report)
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(out_path, lambda f: f.write(text.encode()))
    print(f"{line}  -> {out_path}")
