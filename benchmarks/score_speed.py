"""Time and peak memory to score generated 64 x 64 samples against a folder's cached real statistics.

Two result lines, `score_speed features=... key=value ...`, one per feature network:
  features=inception   the FID Inception-v3 (a seeded stand-in of the same architecture unless
                       --inception-weights names the real file: the time does not depend on the values)
  features=ganctl      ganctl's small classifier (FeatureNet at 64 x 64, random weights: the same cost)
  real, real_s         images in the real folder and the time to compute (and cache) their statistics
  measured             samples actually scored; samples the count the line is about (extrapolated
                       linearly from `measured` when smaller: embedding is per image, KID and FID are not
                       and are timed once, see fixed_s)
  embed_per_image_ms   feature-net time per sample; fixed_s the statistics from the features (FID,
                       KID over 100 subsets, precision/recall) and reading the cache
  score_s              fixed_s + samples x embed_per_image_ms: the time for `samples`
  rss_peak_mb          peak resident memory of the scoring process (ru_maxrss, see memory.py)

Each measurement runs in a fresh process started by memory.py's launcher. The real folder is read
through its memory-mapped pack; the samples through a memory-mapped .npy, one batch at a time.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from memory import SIDE, peak_rss_mb, write_folder

import common

CHILD = """
import json, sys, time
import numpy as np, torch
from ganctl import features, folder, inception, metrics
from ganctl.config import DatasetConfig
from ganctl.data import prepared_folder
mode, images, root, weights_path, samples_path, n, batch = sys.argv[1:8]
n, batch, cpu = int(n), int(batch), torch.device("cpu")
cfg = DatasetConfig(name="folder", path=images, root=root, resolution=64)
fake = np.load(samples_path, mmap_mode="r")[:n]
start = time.perf_counter()
if mode == "ganctl":
    torch.manual_seed(0)
    net = features.FeatureNet(3, 64).eval()
    real, _ = features.embed_all(net, torch.from_numpy(prepared_folder(cfg).load()), cpu, batch)
    mu, sigma = metrics.feature_stats(real)
    real_s = time.perf_counter() - start
    start = time.perf_counter()
    f = np.concatenate([features.embed_all(net, torch.from_numpy(np.array(fake[a:a + batch])), cpu, batch)[0]
                        for a in range(0, n, batch)])
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics.distribution_scores(f, mu, sigma, real, 5000, 0)
else:
    weights = inception.resolve_weights(weights_path)
    net = inception.extractor(weights, cpu)
    stats = inception.real_stats(cfg, weights, net, cpu, batch)
    real_s = time.perf_counter() - start
    start = time.perf_counter()
    f = inception.embed(net, fake, cpu, batch)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    inception.scores(f, stats)
print(json.dumps({"real_s": real_s, "embed_s": embed_s, "stats_s": time.perf_counter() - start}))
"""


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def blocky_samples(path: Path, n: int, seed: int = 1) -> Path:
    """n uint8 3 x 64 x 64 samples of random 8 x 8 colour blocks, as an .npy the child maps."""
    low = np.random.default_rng(seed).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    np.save(path, low.repeat(SIDE // 8, axis=2).repeat(SIDE // 8, axis=3))
    return path


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=10_000, help="samples the result is for (default 10,000)")
    p.add_argument("--inception-measured", type=int, default=1000, help="samples Inception embeds (default 1,000)")
    p.add_argument("--real", type=int, default=1000, help="real images in the folder (default 1,000)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--inception-weights", default=None, help="the real weights file (default: a stand-in)")
    args = p.parse_args()
    if args.smoke:
        args.samples, args.inception_measured, args.real = 40, 8, 8
    device = common.setup(args)
    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        tmp = Path(tmp)
        write_folder(tmp / "images", args.real)
        samples = blocky_samples(tmp / "samples.npy", args.samples)
        weights = args.inception_weights or common.write_standin_inception(tmp / "standin.pth")
        env = {**common.child_env(args), "GANCTL_CACHE": str(tmp / "cache")}
        for mode, measured in (("inception", args.inception_measured), ("ganctl", args.samples)):
            measured = min(measured, args.samples)
            cmd = [sys.executable, "-c", CHILD, mode, str(tmp / "images"), str(tmp / "data"), str(weights)]
            cmd += [str(samples), str(measured), str(args.batch_size)]
            if mode == "inception":
                common.note(f"Inception statistics of {args.real} real images (computed once, then cached)")
                _, out = peak_rss_mb(cmd, env, tmp)  # builds the pack and the statistics cache
                real_s = float(last_json(out)["real_s"])
            common.note(f"{mode}: scoring {measured} samples")
            start = time.perf_counter()
            rss, out = peak_rss_mb(cmd, env, tmp)
            wall = time.perf_counter() - start
            t = last_json(out)
            if mode == "ganctl":
                real_s = t["real_s"]
            per_image = t["embed_s"] / measured
            fixed = t["stats_s"] + (t["real_s"] if mode == "inception" else 0.0)
            common.emit(
                "score_speed",
                device,
                {
                    "features": mode,
                    "real": args.real,
                    "real_s": real_s,
                    "measured": measured,
                    "samples": args.samples,
                    "embed_per_image_ms": 1000 * per_image,
                    "fixed_s": fixed,
                    "score_s": fixed + args.samples * per_image,
                    "process_wall_s": wall,
                    "rss_peak_mb": rss,
                },
            )


if __name__ == "__main__":
    main()
