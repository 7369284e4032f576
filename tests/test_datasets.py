"""The datasets with a known layout end to end: Fashion-MNIST on the real files, CIFAR-10 on generated
files in its format, and the 2-D mixtures (ring8, grid25) with their mode metrics, train, sample and eval."""

import contextlib
import csv
import json
import math

import numpy as np
import pytest
import torch
from test_data import blobs, write_cifar10, write_idx

from ganctl import features, metrics
from ganctl.commands import evaluate, sample
from ganctl.commands.train import run
from ganctl.config import DatasetConfig
from ganctl.data import load_dataset, mixture_modes
from ganctl.errors import ConfigError
from ganctl.training import checkpoint
from ganctl.training.validate import validate

from conftest import compose, run_cli

CPU = torch.device("cpu")
QUIET = ("trainer.progress=false", "trainer.device=cpu")


@contextlib.contextmanager
def one_thread():
    # On a shared, loaded 2-core CPU, two OpenMP threads on these tiny products were many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --- Mode metrics -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, std, k", [("ring8", 0.02, 8), ("grid25", 0.05, 25)])
def test_true_mixture_covers_every_mode_and_a_collapsed_set_one(name, std, k):
    cfg = DatasetConfig(name=name, std=std, samples_per_epoch=10000)
    modes = mixture_modes(cfg)
    real = metrics.mode_stats(load_dataset(cfg, CPU, seed=0).data.numpy(), modes, std)
    assert real["modes_covered"] == real["modes_total"] == k
    # A 2-D Gaussian puts 1 - exp(-9/2) = 98.9% of its mass within 3 std.
    assert real["high_quality_share"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)
    assert 0.0 <= real["mode_kl"] < 0.01
    assert sum(real["mode_shares"]) == pytest.approx(real["high_quality_share"], abs=1e-3)

    rng = np.random.default_rng(0)
    collapsed = modes[3] + rng.normal(0.0, std, size=(10000, 2))
    one = metrics.mode_stats(collapsed, modes, std)
    assert one["modes_covered"] == 1 and one["mode_shares"][3] > 0.98
    assert one["mode_kl"] == pytest.approx(math.log(k))  # KL of a one-mode histogram from uniform


def test_mode_metrics_thresholds():
    modes = mixture_modes(DatasetConfig(name="ring8", radius=2.0))
    std = 0.02
    # 2,500 samples: 2,496 on mode 0; one 2.9 std from mode 1, one 3.1 std from mode 2, one halfway
    # between modes 0 and 1, one NaN.
    points = np.repeat(modes[:1], 2500, axis=0)
    points[1], points[2] = modes[1] + [2.9 * std, 0.0], modes[2] + [0.0, -3.1 * std]
    points[3] = (modes[0] + modes[1]) / 2
    points[4] = np.nan
    s = metrics.mode_stats(points, modes, std)
    assert s["modes_covered"] == 2  # one high-quality sample of 2,500 is VEEGAN's bar
    assert s["high_quality_share"] == pytest.approx(2497 / 2500)
    assert s["mode_kl"] == pytest.approx(sum(p * math.log(p * 8) for p in (2496 / 2497, 1 / 2497)))
    # One such sample among 25,000 is a tenth of that share: mode 1 no longer counts.
    many = np.concatenate([np.repeat(modes[:1], 24999, axis=0), points[1:2]])
    assert metrics.mode_stats(many, modes, std)["modes_covered"] == 1
    assert metrics.mode_stats(np.full((10, 2), 50.0), modes, std)["mode_kl"] is None


# --- Config rules -----------------------------------------------------------------------------------
def test_ring8_and_grid25_experiments_compose_and_rules_hold():
    for name in ("ring8", "grid25"):
        cfg = compose(f"+experiment={name}")
        assert cfg.dataset.name == name and cfg.model.arch == "mlp" and cfg.model.g_out == "none"
        assert cfg.trainer.batch_size == 512 and cfg.trainer.d_steps == cfg.trainer.g_steps == 1
        validate(cfg)
    ring = compose("+experiment=ring8")
    assert (ring.dataset.std, ring.dataset.radius) == (0.02, 2.0)
    assert compose("+experiment=grid25").dataset.std == 0.05
    assert compose("+experiment=gaussian1d").dataset.name == "gaussian1d"  # setup 002 is untouched
    for overrides, needle in (
        (["model.g_out=tanh"], "model.g_out=tanh cannot reach dataset=ring8's modes"),
        (["model=dcgan"], "model.arch='dcgan' is invalid; accepted: mlp for dataset=ring8"),
        (["trainer.eval_every=100"], "trainer.eval_every=100 is invalid; accepted: null"),
        (["dataset.radius=0"], "dataset.radius=0.0 is invalid; accepted: a number > 0"),
    ):
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            validate(compose("+experiment=ring8", *overrides))
    # A small enough ring fits in tanh's range.
    validate(compose("+experiment=ring8", "model.g_out=tanh", "dataset.radius=0.5"))


# --- ring8: train, sample, eval -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ring8") / "run"
    with one_thread():
        run(compose("+experiment=ring8", "trainer.steps=300", "trainer.sample_every=300", *QUIET), run_dir)
    return run_dir


def test_ring8_trains_and_samples_points(ring_run, tmp_path, capsys):
    ckpt = checkpoint.load(ring_run / "checkpoints" / "last.pt")
    assert tuple(ckpt["data_shape"]) == (2,) and ckpt["step"] == 300
    rows = list(csv.DictReader(open(ring_run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200, 300] and all(math.isfinite(float(r["d_loss"])) for r in rows)
    assert "fake_mean" not in rows[0]  # the 1-D Gaussian's columns: a mean over both coordinates says nothing

    sample.main([str(ring_run), "-n", "500", "-o", str(tmp_path / "s.npy")])
    points = np.load(tmp_path / "s.npy")
    assert points.shape == (500, 2) and points.dtype == np.float32 and np.isfinite(points).all()
    assert capsys.readouterr().out.startswith("modes ")
    sample.main([str(ring_run), "-n", "500", "-o", str(tmp_path / "s.csv")])
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "x,y" and len(lines) == 501
    assert np.allclose(np.array([list(map(float, ln.split(","))) for ln in lines[1:]]), points, atol=1e-5)
    sample.main([str(ring_run), "-n", "500", "-o", str(tmp_path / "s.png")])
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    # The mode rings are drawn in red: a scatter, not the 1-D histogram.
    assert ((picture[..., 0] > 200) & (picture[..., 1] < 80)).sum() > 50


def test_ring8_eval_reports_modes(ring_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    evaluate.main([str(ring_run), "-n", "2500", "-o", str(out)])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("modes ") and "/8" in line and "high_quality" in line
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert report["dataset"] == "ring8" and report["target"] == {"modes": 8, "std": 0.02, "radius": 2.0}
    assert 0 <= m["modes_covered"] <= 8 and 0.0 <= m["high_quality_share"] <= 1.0 and len(m["mode_shares"]) == 8
    assert m["min_mode_share"] == metrics.MODE_SHARE


@pytest.mark.slow
def test_ring8_experiment_covers_the_ring(tmp_path):
    """The full +experiment=ring8 (3,000 steps, ~25 s on one core) learns most of the ring."""
    with one_thread():
        run(compose("+experiment=ring8", *QUIET), tmp_path / "run")
    evaluate.main([str(tmp_path / "run"), "-n", "2500", "-o", str(tmp_path / "e.json")])
    m = json.loads((tmp_path / "e.json").read_text())["metrics"]
    # Measured for seed 0: 8 modes, 87% high quality; a plain GAN hops, so leave room.
    assert m["modes_covered"] >= 6 and m["high_quality_share"] > 0.5, m


def test_grid25_trains_a_few_steps(tmp_path):
    with one_thread():
        run(compose("+experiment=grid25", "trainer.steps=20", "trainer.log_every=10", *QUIET), tmp_path / "g")
    ckpt = checkpoint.load(tmp_path / "g" / "checkpoints" / "last.pt")
    assert tuple(ckpt["data_shape"]) == (2,) and ckpt["config"]["dataset"]["spacing"] == 2.0


# --- Fashion-MNIST on the real files ---------------------------------------------------------------------
def test_fashion_mnist_trains_on_the_real_train_split(fashion_root, tmp_path):
    with one_thread():
        summary = run(
            compose(
                "dataset=fashion_mnist",
                "model=mlp",
                f"dataset.root={fashion_root}",
                "dataset.download=false",
                "model.g_hidden=[32]",
                "model.d_hidden=[32]",
                "trainer.steps=3",
                "trainer.epochs=null",
                "trainer.log_every=3",
                *QUIET,
            ),
            tmp_path / "run",
        )
    assert summary["steps"] == 3 and math.isfinite(summary["d_loss"])
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert tuple(ckpt["data_shape"]) == (1, 28, 28) and ckpt["config"]["dataset"]["name"] == "fashion_mnist"
    sample.main([str(tmp_path / "run"), "-n", "6", "-o", str(tmp_path / "s.npz")])
    with np.load(tmp_path / "s.npz") as z:
        assert z["arr_0"].shape == (6, 28, 28) and z["arr_0"].dtype == np.uint8


def test_fashion_mnist_eval_on_a_subset_of_the_real_test_split(fashion_root, tmp_path, capsys):
    # The first 2,000 real test images and labels, rewritten in the same layout: a feature net in seconds.
    real = DatasetConfig(name="fashion_mnist", root=str(fashion_root), split="test", download=False)
    images = load_dataset(real, CPU).data[:2000, 0].numpy()
    labels = features.load_real(real).labels[:2000].numpy().astype(np.uint8)
    root = tmp_path / "data"
    write_idx(root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz", images)
    write_idx(root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", labels)
    with one_thread():
        evaluate.main(
            ["fit", "fashion_mnist", "--data-root", str(root), "--split", "test", "--epochs", "2", "--device", "cpu"]
        )
    out = capsys.readouterr().out
    accuracy = float(out.split("held-out accuracy ")[-1].split("%")[0]) / 100
    assert accuracy > 0.6 and (root / "ganctl_features" / "fashion_mnist_test.pt").is_file()

    np.savez(tmp_path / "real.npz", images[:500])
    noise = np.random.default_rng(0).integers(0, 256, size=(500, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", noise)
    scores = {}
    for name in ("real", "noise"):
        evaluate.main(
            [
                str(tmp_path / f"{name}.npz"),
                "--dataset",
                "fashion_mnist",
                "--data-root",
                str(root),
                "--split",
                "test",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / f"{name}.json"),
            ]
        )
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())["metrics"]
    assert scores["real"]["fd"] * 10 < scores["noise"]["fd"]
    assert scores["real"]["classes_covered"] == 10


# --- CIFAR-10 on generated files in its format ----------------------------------------------------------
def test_cifar10_trains_samples_and_evaluates(tmp_path, capsys):
    root = write_cifar10(tmp_path / "data", per_batch=40, seed=0)
    with one_thread():
        evaluate.main(
            ["fit", "cifar10", "--data-root", str(root), "--split", "train", "--epochs", "1", "--device", "cpu"]
        )
        assert (root / "ganctl_features" / "cifar10_train.pt").is_file()
        run(
            compose(
                "dataset=cifar10",
                "model=dcgan",
                f"dataset.root={root}",
                "dataset.download=false",
                "model.width=8",
                "trainer.steps=2",
                "trainer.epochs=null",
                "trainer.log_every=1",
                "trainer.batch_size=16",
                *QUIET,
            ),
            tmp_path / "run",
        )
        ckpt = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
        assert tuple(ckpt["data_shape"]) == (3, 32, 32)
        evaluate.main([str(tmp_path / "run"), "-n", "64", "--device", "cpu"])
    report = json.loads((tmp_path / "run" / "checkpoints" / "last_eval.json").read_text())
    assert report["dataset"] == "cifar10" and report["n"] == 64 and np.isfinite(report["metrics"]["fd"])
    # An .npz of CIFAR-shaped samples (N x 32 x 32 x 3) is accepted; greyscale 28x28 is not.
    np.savez(tmp_path / "x.npz", blobs(64, 3, 32, seed=5).transpose(0, 2, 3, 1))
    evaluate.main(
        [
            str(tmp_path / "x.npz"),
            "--dataset",
            "cifar10",
            "--data-root",
            str(root),
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "x.json"),
        ]
    )
    assert json.loads((tmp_path / "x.json").read_text())["n"] == 64
    np.savez(tmp_path / "grey.npz", np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(ConfigError, match="cifar10 needs 32 x 32 x 3"):
        evaluate.main([str(tmp_path / "grey.npz"), "--dataset", "cifar10", "--data-root", str(root)])


def test_cifar10_missing_offline_is_one_line(tmp_path):
    proc = run_cli(
        "train",
        "dataset=cifar10",
        "model=dcgan",
        f"dataset.root={tmp_path}",
        "dataset.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=120,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert str(tmp_path / "cifar-10-batches-py") in lines[0] and "data_batch_1" in lines[0]
