"""ganctl eval: the metric formulas on known cases, the feature net on real MNIST, a trained generator."""

import contextlib
import json
import re
import shutil

import numpy as np
import pytest
import torch
from scipy import stats

from ganctl import features, metrics
from ganctl.commands import evaluate
from ganctl.commands.train import run
from ganctl.config import DatasetConfig
from ganctl.errors import ConfigError

from conftest import compose, run_cli


# --- Pure metrics ---------------------------------------------------------------------------------
def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_sample_statistics_converges():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 4))
    b = rng.normal(0.5, 2.0, size=(20000, 4))
    fd = metrics.frechet_distance(*metrics.feature_stats(a), *metrics.feature_stats(b))
    assert fd == pytest.approx(4 * 0.25 + 4 * (1 + 4 - 2 * 2), rel=0.05)


def test_classifier_score_is_one_for_one_class_and_k_for_even_confident_classes():
    one_class = np.tile(np.eye(10)[3], (100, 1))
    assert metrics.classifier_score(one_class) == pytest.approx(1.0, abs=1e-6)
    spread = np.tile(np.eye(10), (10, 1))
    assert metrics.classifier_score(spread) == pytest.approx(10.0, rel=1e-6)
    unsure = np.full((100, 10), 0.1)  # spread but unconfident: no credit either
    assert metrics.classifier_score(unsure) == pytest.approx(1.0, abs=1e-6)


def test_coverage_catches_a_collapsed_generator():
    collapsed = metrics.class_coverage(np.full(1000, 7), 10)
    assert collapsed["classes_covered"] == 1 and collapsed["max_class_share"] == 1.0
    even = metrics.class_coverage(np.arange(1000) % 10, 10)
    assert even["classes_covered"] == 10 and even["max_class_share"] == pytest.approx(0.1)
    # Threshold: half the uniform share (5% of 10 classes); 4% misses it.
    labels = np.array([0] * 40 + [1] * 50 + [2] * 910)
    assert metrics.class_coverage(labels, 10)["classes_covered"] == 2


def test_precision_recall_same_and_disjoint_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(800, 8))
    same = metrics.precision_recall(real, rng.normal(size=(800, 8)))
    assert same["precision"] > 0.8 and same["recall"] > 0.8
    far = metrics.precision_recall(real, rng.normal(size=(800, 8)) + 50.0)
    assert far == {"precision": 0.0, "recall": 0.0}
    # Half the real modes dropped: precision stays high, recall falls.
    modes = np.concatenate([rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 20.0])
    half = metrics.precision_recall(modes, rng.normal(size=(800, 8)))
    assert half["precision"] > 0.8 and 0.35 < half["recall"] < 0.6


def test_gaussian1d_stats_agree_with_scipy():
    rng = np.random.default_rng(1)
    v = rng.gamma(4.0, size=5000)
    s = metrics.gaussian1d_stats(v, mean=4.0, std=2.0)
    assert s["mean"] == pytest.approx(v.mean()) and s["std"] == pytest.approx(v.std())
    assert s["skewness"] == pytest.approx(stats.skew(v))
    assert s["kurtosis"] == pytest.approx(stats.kurtosis(v))  # Fisher: excess kurtosis
    assert s["ks_statistic"] == pytest.approx(stats.kstest(v, stats.norm(4.0, 2.0).cdf).statistic)
    target = rng.normal(4.0, 2.0, size=200000)
    assert s["wasserstein1"] == pytest.approx(stats.wasserstein_distance(v, target), abs=0.02)
    exact = metrics.gaussian1d_stats(rng.normal(4.0, 2.0, size=5000), 4.0, 2.0)
    assert exact["ks_statistic"] < 0.03 and exact["wasserstein1"] < 0.1


# --- Bad input ------------------------------------------------------------------------------------
def test_inception_features_without_a_library_is_one_clear_error(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.split(".")[0] in ("torch_fidelity", "torchmetrics") else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install ganctl\[fid\]"):
        evaluate.main([str(tmp_path / "x.npz"), "--dataset", "mnist", "--features", "inception"])


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    np.savez(tmp_path / "s.npz", np.zeros((4, 28, 28), dtype=np.uint8))
    proc = run_cli("eval", str(tmp_path / "s.npz"), timeout=120)  # the real CLI once; the rest in-process
    assert proc.returncode == 2 and "--dataset" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for args, needle in (
        ([str(tmp_path / "s.npz"), "--dataset", "cifar"], "accepted: mnist, fashion_mnist, svhn, cifar10, gaussian1d"),
        ([str(tmp_path / "s.npz"), "--dataset", "svhn"], "needs 32 x 32 x 3"),
        ([str(tmp_path / "s.npz"), "--dataset", "mnist", "-n", "0"], "-n 0"),
        (["fit", "gaussian1d"], "accepted: mnist, fashion_mnist, svhn, cifar10"),
    ):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            evaluate.main(args)


# --- The feature network on the real MNIST test split -------------------------------------------------
@contextlib.contextmanager
def one_thread():
    # On a shared, loaded CPU, two OpenMP threads were 10x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted(mnist_root, tmp_path_factory):
    """A writable copy of the data with the feature net trained and cached in it (~1 minute)."""
    root = tmp_path_factory.mktemp("eval_data")
    shutil.copytree(mnist_root / "MNIST", root / "MNIST")
    with one_thread():
        cfg = DatasetConfig(name="mnist", root=str(root), split="test", download=False)
        model = features.fit(cfg, torch.device("cpu"), progress=False)
        yield root, cfg, model


@pytest.mark.slow
def test_feature_net_accuracy_and_real_vs_real_far_below_noise(fitted):
    root, cfg, model = fitted
    assert model.accuracy > 0.97
    assert model.path == root / "ganctl_features" / "mnist_test.pt" and model.path.is_file()
    cached = features.load_cached(cfg, torch.device("cpu"))
    assert cached is not None and cached.accuracy == model.accuracy and np.allclose(cached.mu, model.mu)

    real = features.load_real(cfg).images
    f1, _ = features.embed_all(model.net, real[:5000], torch.device("cpu"))
    f2, _ = features.embed_all(model.net, real[5000:], torch.device("cpu"))
    noise = torch.randint(0, 256, (5000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fn, pn = features.embed_all(model.net, noise, torch.device("cpu"))
    real_vs_real = metrics.frechet_distance(*metrics.feature_stats(f1), *metrics.feature_stats(f2))
    noise_vs_real = metrics.frechet_distance(*metrics.feature_stats(fn), *metrics.feature_stats(f2))
    assert np.isfinite(real_vs_real) and real_vs_real * 20 < noise_vs_real, (real_vs_real, noise_vs_real)


@pytest.mark.slow
def test_class_accuracy_counts_agreement_with_the_asked_classes(fitted):
    _, cfg, model = fitted
    real = features.load_real(cfg)
    x, y = real.images[-1000:], real.labels[-1000:]  # the held-out images the net never trained on
    right = features.image_metrics(x, model, torch.device("cpu"), 500, 200, 0, labels=y)
    # Asking for the true classes gives the net's held-out accuracy: fit scored the same 1,000 images
    # in the same batches of 500 (at 9,000 and 9,500), so the same float operations; equal exactly.
    assert right["class_accuracy"] == pytest.approx(model.accuracy, abs=1e-9)
    wrong = features.image_metrics(x, model, torch.device("cpu"), 500, 200, 0, labels=(y + 1) % 10)
    assert wrong["class_accuracy"] < 0.05  # asking for the next digit: the net agrees only where it errs
    assert "class_accuracy" not in features.image_metrics(x, model, torch.device("cpu"), 500, 200, 0)


@pytest.fixture(scope="module")
def trained_run(fitted, tmp_path_factory):
    root, _, _ = fitted
    run_dir = tmp_path_factory.mktemp("eval_run") / "run"
    # Setup 000 learns fastest of the MNIST setups: at 5,000 steps (~15 s on one core) it draws
    # digit-like strokes, FD ~300-360 against ~800 for pixel noise (seeds 0 and 1, n 2,000).
    # mnist_bce still draws grey blobs at that point (FD > noise), so it cannot show the ordering.
    cfg = compose(
        "+experiment=mnist_vanilla",
        f"dataset.root={root}",
        "dataset.split=test",
        "trainer.steps=5000",
        "trainer.log_every=1000",
        "trainer.sample_every=5000",
        "trainer.progress=false",
        "trainer.device=cpu",
    )
    with one_thread():
        run(cfg, run_dir)
    return run_dir


@pytest.mark.slow
def test_trained_generator_scores_between_real_data_and_noise(fitted, trained_run, tmp_path, capsys):
    root, cfg, model = fitted
    evaluate.main([str(trained_run), "-n", "2000", "--device", "cpu"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("fd ") and "feature net mnist/test acc" in line
    report = json.loads((trained_run / "checkpoints" / "last_eval.json").read_text())
    m = report["metrics"]
    assert report["step"] == 5000 and report["n"] == 2000 and report["split"] == "test"
    assert report["feature_net"]["heldout_accuracy"] == pytest.approx(model.accuracy)
    assert 1.0 <= m["classifier_score"] <= 10.0 and 1 <= m["classes_covered"] <= 10
    assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0

    # Real images through the .npz path: the same cached net, a far smaller distance.
    pixels = features.load_real(cfg).images[:2000, 0].numpy()
    np.savez(tmp_path / "real.npz", pixels)
    evaluate.main(
        [
            str(tmp_path / "real.npz"),
            "--dataset",
            "mnist",
            "--data-root",
            str(root),
            "--split",
            "test",
            "-o",
            str(tmp_path / "real.json"),
        ]
    )
    real = json.loads((tmp_path / "real.json").read_text())["metrics"]
    assert real["fd"] * 10 < m["fd"]
    assert real["classes_covered"] == 10 and real["classifier_score"] > 8.0
    assert real["recall"] > m["recall"]

    # Uniform pixel noise, the same number of samples: far worse than the trained generator.
    noise = np.random.default_rng(0).integers(0, 256, size=(2000, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", noise)
    evaluate.main(
        [
            str(tmp_path / "noise.npz"),
            "--dataset",
            "mnist",
            "--data-root",
            str(root),
            "--split",
            "test",
            "-o",
            str(tmp_path / "noise.json"),
        ]
    )
    noise_fd = json.loads((tmp_path / "noise.json").read_text())["metrics"]["fd"]
    assert real["fd"] < m["fd"] < 0.75 * noise_fd, (real["fd"], m["fd"], noise_fd)


def test_eval_of_a_gaussian_generator(tmp_path, capsys):
    run(
        compose("trainer.steps=150", "trainer.log_every=50", "trainer.progress=false", "trainer.device=cpu"),
        tmp_path / "g",
    )
    out = tmp_path / "g.json"
    evaluate.main([str(tmp_path / "g"), "-n", "5000", "-o", str(out)])
    assert capsys.readouterr().out.startswith("mean ")
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert report["target"] == {"mean": 4.0, "std": 1.25}
    assert set(m) >= {"mean", "std", "skewness", "kurtosis", "ks_statistic", "wasserstein1"}
    assert 0.0 <= m["ks_statistic"] <= 1.0 and m["wasserstein1"] >= 0.0
    # A short run has moved toward the target; W1 is at least the gap between the means.
    assert m["wasserstein1"] >= abs(m["mean"] - 4.0) - 1e-9


def test_eval_on_svhn_files_fits_colour_features_and_scores_a_checkpoint(svhn_root, tmp_path, capsys):
    # A private copy: the feature cache is written under the data folder.
    root = tmp_path / "data"
    shutil.copytree(svhn_root / "SVHN", root / "SVHN")
    evaluate.main(["fit", "svhn", "--data-root", str(root), "--split", "train", "--epochs", "2"])
    cached = root / "ganctl_features" / "svhn_train.pt"
    assert cached.is_file() and "held-out accuracy" in capsys.readouterr().out

    run(
        compose(
            "+experiment=svhn_wgan_gp",
            f"dataset.root={root}",
            "model.width=8",
            "trainer.steps=2",
            "trainer.epochs=null",
            "trainer.log_every=1",
            "trainer.progress=false",
            "trainer.device=cpu",
        ),
        tmp_path / "run",
    )
    evaluate.main([str(tmp_path / "run"), "-n", "256", "--device", "cpu"])
    report = json.loads((tmp_path / "run" / "checkpoints" / "last_eval.json").read_text())
    assert report["dataset"] == "svhn" and report["split"] == "train" and report["n"] == 256
    m = report["metrics"]
    assert np.isfinite(m["fd"]) and m["fd"] > 0 and 1.0 <= m["classifier_score"] <= 10.0

    # The real test file (same format, other images) sits far closer to the train statistics
    # than a generator trained for two steps.
    import scipy.io

    X = scipy.io.loadmat(str(svhn_root / "SVHN" / "test_32x32.mat"))["X"]  # 32 x 32 x 3 x N
    np.savez(tmp_path / "real.npz", np.ascontiguousarray(X.transpose(3, 0, 1, 2)))
    evaluate.main(
        [
            str(tmp_path / "real.npz"),
            "--dataset",
            "svhn",
            "--data-root",
            str(root),
            "--split",
            "train",
            "-o",
            str(tmp_path / "real.json"),
        ]
    )
    real = json.loads((tmp_path / "real.json").read_text())["metrics"]
    assert real["fd"] < m["fd"], (real["fd"], m["fd"])
