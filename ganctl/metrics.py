"""Sample-quality metrics as pure functions of features, class probabilities, 1-D values or 2-D points."""

from __future__ import annotations

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


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the Frechet distance of two Gaussians (as FID).

    Tr (S1 S2)^1/2 is the sum of the square roots of the eigenvalues of S1 S2 (real and >= 0 for two
    covariances), as torch-fidelity and torchmetrics compute it: for 2,048 Inception features that
    takes 11 s on one core here where scipy's sqrtm took 67 s, and singular covariances (dead ReLU
    features, fewer samples than features) need no offset.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    # Round-off leaves tiny negative or complex eigenvalues; their square roots' real parts are ~0.
    tr_covmean = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(np.complex128)).real.sum()
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean))


def frechet_distance_to(rows: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """The Frechet distance of the Gaussian fitted to `rows` (samples x features) to N(mu, sigma).

    With fewer rows than features, S1 = A^T A for the centred rows A / sqrt(n - 1), and the nonzero
    eigenvalues of S1 S2 are those of the n x n matrix A S2 A^T: exact, and for a few hundred samples
    of 2,048 features milliseconds instead of the seconds of a 2,048 x 2,048 eigenproblem.
    """
    f = np.asarray(rows, dtype=np.float64)
    n, d = f.shape
    if n < 2 or n - 1 >= d:
        return frechet_distance(*feature_stats(f), mu, sigma)
    a = (f - f.mean(axis=0)) / np.sqrt(n - 1)
    inner = a @ np.asarray(sigma, dtype=np.float64) @ a.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = f.mean(axis=0) - np.asarray(mu, dtype=np.float64)
    return float(max(0.0, diff @ diff + (a * a).sum() + np.trace(sigma) - 2.0 * tr_covmean))


class Moments:
    """Running mean and covariance of feature rows from float64 sums: d x d memory for any number of rows."""

    def __init__(self, dims: int):
        self.n, self.total, self.outer = 0, np.zeros(dims), np.zeros((dims, dims))

    def add(self, rows: np.ndarray) -> None:
        f = np.asarray(rows, dtype=np.float64)
        self.n += len(f)
        self.total += f.sum(axis=0)
        self.outer += f.T @ f

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """What feature_stats gives for all rows added (the covariance with n - 1)."""
        if self.n < 2:
            raise ValueError(f"need at least 2 feature rows, got {self.n}")
        mu = self.total / self.n
        return mu, (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)


# Binkowski et al. 2018 (KID): 100 subsets of 1,000 samples each, as torch-fidelity's defaults.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = KID_SUBSETS, size: int = KID_SUBSET_SIZE, seed: int = 0
) -> dict:
    """Kernel Inception Distance: the unbiased MMD^2 with the kernel (x.y / d + 1)^3, its mean and
    standard deviation over `subsets` random subsets of min(size, n) samples a side.

    Unbiased, it is near 0 for two samples of one distribution at any sample count (FID is biased
    upwards at small n), so it is the number to read for a few hundred samples.
    """
    r = torch.as_tensor(np.asarray(real, dtype=np.float32))
    f = torch.as_tensor(np.asarray(fake, dtype=np.float32))
    m = min(size, len(r), len(f))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(r)} real and {len(f)} fake")
    rng = np.random.default_rng(seed)
    d = r.shape[1]
    values = []
    for _ in range(subsets if m < max(len(r), len(f)) else 1):  # one subset of everything when m covers all
        x = r[torch.from_numpy(rng.choice(len(r), m, replace=False))]
        y = f[torch.from_numpy(rng.choice(len(f), m, replace=False))]
        # float32 dot products (as torch-fidelity's numpy ones), float64 from the cube on
        k_xx, k_yy, k_xy = (((a @ b.T).double() / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        same = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        values.append(float(same - 2 * k_xy.sum() / (m * m)))
    return {"kid_mean": float(np.mean(values)), "kid_std": float(np.std(values)), "kid_subset_size": m}


def distribution_scores(
    fake: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    real: np.ndarray,
    pr_samples: int,
    seed: int,
    pr_k: int = 3,
) -> dict:
    """Every distance between generated features and the real data's: Frechet distance against the
    real mean and covariance, KID and precision/recall against `real`, a fixed subset of real features."""
    fake = np.asarray(fake, dtype=np.float32)
    out = {"fd": frechet_distance_to(fake, mu, sigma)}
    out.update(kid(real, fake, seed=seed))
    m = min(pr_samples, len(fake), len(real))
    rng = np.random.default_rng(seed)
    out.update(precision_recall(real[rng.permutation(len(real))[:m]], fake[rng.permutation(len(fake))[:m]], k=pr_k))
    out["pr_samples"] = m
    return out


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
