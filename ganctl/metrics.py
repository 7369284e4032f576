"""Sample-quality metrics as pure functions of features, class probabilities, 1-D values or 2-D points."""

from __future__ import annotations

import warnings

import numpy as np
import torch

# A class counts as covered when it receives at least half of its uniform share (0.5 / classes).
COVERAGE_FRACTION = 0.5


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples) in float64, as the Frechet distance needs."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the Frechet distance of two Gaussians (as FID)."""
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Dead ReLU features make both covariances singular; sqrtm warns but its result is usable.
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            # Offset both diagonals and retry, as pytorch-fid does.
            offset = np.eye(s1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    # Round-off gives sqrtm a tiny imaginary part; a large one means the input was not a covariance.
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)))


def classifier_score(probs: np.ndarray) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), the Inception Score's formula on any classifier's softmax.

    1 when every sample gets the same prediction; the number of classes when predictions are
    confident and spread evenly over all classes.
    """
    p = np.asarray(probs, dtype=np.float64)
    p_y = p.mean(axis=0, keepdims=True)
    tiny = 1e-12
    kl = (p * (np.log(p + tiny) - np.log(p_y + tiny))).sum(axis=1)
    return float(np.exp(kl.mean()))


def class_coverage(labels: np.ndarray, num_classes: int, fraction: float = COVERAGE_FRACTION) -> dict:
    """How the predicted classes of the samples spread: a collapsed generator covers few classes.

    `classes_covered` counts classes holding at least `fraction` / num_classes of the samples;
    `max_class_share` is the largest class's share (1 / num_classes when perfectly even).
    """
    labels = np.asarray(labels).ravel()
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    shares = counts / max(1, labels.size)
    return {
        "classes_covered": int((shares >= fraction / num_classes).sum()),
        "max_class_share": float(shares.max()),
        "class_shares": [round(float(s), 4) for s in shares],
    }


def kid(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) on any features: the unbiased estimate of
    MMD^2 under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over `subsets`
    random subsets of `subset_size` rows of each set (without replacement within a subset), and its
    standard deviation over them, as torch-fidelity computes it. Unbiased: its mean over subsets
    is near 0 for two samples of one distribution (it can be slightly negative), at any sample
    count, where FD is biased upwards for small samples."""
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    m = subset_size
    if a.ndim != 2 or a.shape[1] != b.shape[1] or not 2 <= m <= min(len(a), len(b)) or subsets < 1:
        raise ValueError(f"kid needs two feature sets of one width with >= {m} >= 2 rows, got {a.shape}, {b.shape}")
    rng = rng or np.random.default_rng(0)
    kernel = lambda x, y: (x @ y.T / a.shape[1] + 1.0) ** 3  # noqa: E731
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        same = kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)
        mmds[i] = (same / (m - 1) - 2.0 * kxy.sum() / m) / m
    return float(mmds.mean()), float(mmds.std())


def _kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    radii = []
    for start in range(0, x.shape[0], chunk):
        d = torch.cdist(x[start : start + chunk], x)
        # k + 1 smallest: the first is the point itself at distance 0.
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _inside_any(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    inside = []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start : start + chunk], centres)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, chunk: int = 1000) -> dict:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds in feature space.

    precision: share of generated samples inside the real manifold (the union of balls around each
    real feature reaching its k-th nearest real neighbour); recall: share of real samples inside
    the generated manifold, built the same way.
    """
    r = torch.as_tensor(np.asarray(real, dtype=np.float32))
    f = torch.as_tensor(np.asarray(fake, dtype=np.float32))
    if min(r.shape[0], f.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_radii = _kth_neighbour_radii(r, k, chunk)
    f_radii = _kth_neighbour_radii(f, k, chunk)
    return {
        "precision": float(_inside_any(f, r, r_radii, chunk).float().mean()),
        "recall": float(_inside_any(r, f, f_radii, chunk).float().mean()),
    }


def moments(values: np.ndarray) -> dict[str, float]:
    """Mean, std, skewness and excess kurtosis (0 for a Gaussian) of 1-D samples."""
    v = np.asarray(values, dtype=np.float64).ravel()
    m, s = v.mean(), v.std()
    z = (v - m) / s if s > 0 else np.zeros_like(v)
    return {"mean": float(m), "std": float(s), "skewness": float((z**3).mean()), "kurtosis": float((z**4).mean() - 3.0)}


def gaussian1d_stats(values: np.ndarray, mean: float, std: float) -> dict:
    """Moments of 1-D samples and their distance to the target N(mean, std)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64).ravel()
    ks = stats.kstest(v, stats.norm(loc=mean, scale=std).cdf)
    # W1 against the target's n midpoint quantiles: the empirical-vs-normal distance without
    # sampling noise from a second random draw (it converges to the exact W1 as n grows).
    quantiles = stats.norm.ppf((np.arange(v.size) + 0.5) / v.size, loc=mean, scale=std)
    return {
        **moments(v),
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "wasserstein1": float(stats.wasserstein_distance(v, quantiles)),
    }


# The 2-D mixtures' mode metrics, as Metz et al. 2017 (Unrolled GAN), VEEGAN and PacGAN define them:
# a sample is high quality within 3 std of its nearest mode.
MODE_STDS = 3.0
# VEEGAN counts a mode as captured when at least one of its 2,500 samples is a high-quality sample
# nearest to it (PacGAN's code counts the same way); as a share, a larger -n keeps the same bar.
MODE_SHARE = 1 / 2500


def mode_stats(points: np.ndarray, modes: np.ndarray, std: float, min_share: float = MODE_SHARE) -> dict:
    """Mode coverage of 2-D samples against a mixture of isotropic Gaussians (std each).

    `modes_covered`: modes holding at least `min_share` of all samples as high-quality samples.
    `high_quality_share`: samples within MODE_STDS std of their nearest mode.
    `mode_kl`: KL(p || uniform) of the high-quality samples' mode histogram p (PacGAN's reverse KL):
    0 when every mode gets the same share, log(K) when one mode gets them all; None without any.
    """
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    centres = np.asarray(modes, dtype=np.float64)
    k = len(centres)
    finite = np.isfinite(x).all(axis=1)
    dist = np.full(len(x), np.inf)
    nearest = np.zeros(len(x), dtype=np.int64)
    for start in range(0, len(x), 65536):  # N x K distances a chunk at a time: memory stays flat for any -n
        d = np.linalg.norm(x[start : start + 65536, None, :] - centres[None], axis=2)
        nearest[start : start + 65536] = d.argmin(axis=1)
        dist[start : start + 65536] = d.min(axis=1)
    good = finite & (dist <= MODE_STDS * std)
    counts = np.bincount(nearest[good], minlength=k)
    shares = counts / max(1, len(x))
    kl = None
    if counts.sum() > 0:
        p = counts[counts > 0] / counts.sum()
        kl = float((p * np.log(p * k)).sum())
    return {
        "modes_covered": int(((counts > 0) & (shares >= min_share)).sum()),
        "modes_total": k,
        "high_quality_share": float(good.mean()) if len(x) else 0.0,
        "mode_kl": kl,
        "mode_shares": [round(float(s), 4) for s in shares],
        "min_mode_share": min_share,
    }
