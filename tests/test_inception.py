"""--features inception offline: a seeded stand-in for the FID Inception weights (same architecture),
ganctl's FID/KID/precision/recall against torch-fidelity's on the same file and images, the cached
real statistics, and the one-line errors for a missing, damaged or foreign weights file.

Inception runs at 299 x 299 whatever the input, ~0.5 s an image on one loaded CPU core, so every
test here embeds a handful of images.
"""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import inception, metrics
from ganctl.commands import evaluate
from ganctl.commands.train import run
from ganctl.config import DatasetConfig
from ganctl.errors import ConfigError

from common import write_standin_inception
from conftest import compose, run_cli

pytest.importorskip("torch_fidelity")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return write_standin_inception(tmp_path_factory.mktemp("inception") / "standin.pth", seed=0)


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    """No test reads or downloads into the user's caches, or finds their real weights file."""
    monkeypatch.setenv("GANCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(inception.ENV, raising=False)


def blocky(n: int, seed: int, size: int = 32) -> np.ndarray:
    """n RGB images N x size x size x 3 of random 4 x 4 colour blocks: structure Inception responds to."""
    low = np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return low.repeat(size // 4, axis=1).repeat(size // 4, axis=2)


def write_pngs(folder, pixels: np.ndarray, start: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pixels, start):
        Image.fromarray(p).save(folder / f"{i:03d}.png")
    return folder


def folder_cfg(path, root) -> DatasetConfig:
    return DatasetConfig(name="folder", path=str(path), root=str(root), split="train", resolution=32)


class Images(torch.utils.data.Dataset):
    """uint8 3 x H x W tensors, the input torch-fidelity takes besides image folders."""

    def __init__(self, pixels: np.ndarray):
        self.x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_moments_and_kid_formulas():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(300, 5)).astype(np.float32)
    acc = metrics.Moments(5)
    for part in np.array_split(f, 7):
        acc.add(part)
    for got, want in zip(acc.stats(), metrics.feature_stats(f)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)  # float64 sums of float32 rows
    same = metrics.kid(f[:150], f[150:], subsets=20, size=100)
    shifted = metrics.kid(f[:150], f[150:] + 1.0, subsets=20, size=100)
    # Unbiased: two halves of one sample sit within a few std of 0; a shift of 1 per axis is far out.
    assert abs(same["kid_mean"]) < 3 * same["kid_std"] + 1e-3
    assert shifted["kid_mean"] > 10 * shifted["kid_std"] > 0 and same["kid_subset_size"] == 100


def test_fd_and_kid_equal_torchmetrics_formulas():
    """The second implementation, on features directly: its Frechet distance and its KID of one subset."""
    pytest.importorskip("torchmetrics")
    from torchmetrics.image.fid import _compute_fid
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(1)
    real, fake = rng.gamma(2.0, size=(400, 64)), rng.gamma(2.2, size=(40, 64))  # 40 rows < 64: the n x n path
    mu, sigma = metrics.feature_stats(real)
    theirs = _compute_fid(*(torch.from_numpy(a) for a in (*metrics.feature_stats(fake), mu, sigma)))
    # float64 throughout; their eigenvalues of the singular 64 x 64 S1 S2 against our exact 40 x 40 form.
    assert metrics.frechet_distance_to(fake, mu, sigma) == pytest.approx(float(theirs), rel=1e-7)
    ours = metrics.kid(real[:40], fake, size=40)  # all 40 a side: one subset, the same as theirs
    theirs = poly_mmd(torch.from_numpy(real[:40]), torch.from_numpy(fake))
    assert ours["kid_mean"] == pytest.approx(float(theirs), rel=1e-5)  # our dot products are float32


@pytest.mark.slow  # 32 Inception passes and a 2,048 x 2,048 eigenproblem: 77 s at load 13 on 2 cores
def test_scores_equal_torch_fidelitys_on_the_same_weights_and_images(standin, tmp_path):
    import torch_fidelity

    real_dir = write_pngs(tmp_path / "real", blocky(8, seed=0))
    fake = blocky(8, seed=1)
    weights = inception.resolve_weights(standin)
    assert not weights.published
    net = inception.extractor(weights, CPU)
    real = inception.real_stats(folder_cfg(real_dir, tmp_path / "data"), weights, net, CPU, batch_size=8)
    ours = inception.scores(inception.embed(net, torch.from_numpy(fake).permute(0, 3, 1, 2), CPU, 8), real)
    theirs = torch_fidelity.calculate_metrics(
        input1=Images(fake),
        input2=str(real_dir),  # the PNG files themselves, read by torch-fidelity
        cuda=False,
        fid=True,
        kid=True,
        prc=True,
        kid_subset_size=8,  # all 8 samples: both sides then compute the one same subset
        feature_extractor="inception-v3-compat",  # for precision/recall too (its default there is VGG-16)
        feature_extractor_weights_path=str(standin),
        batch_size=8,
        save_cpu_ram=True,  # no DataLoader worker processes for 16 images
        cache=False,
        verbose=False,
    )
    # The same network and pixels give the same float32 features up to summation order. The FIDs
    # differ in float32 vs float64 means and in their eigenvalues: of the singular 2,048 x 2,048
    # S1 S2 (theirs) against the exact 8 x 8 form (ours), which agreed to ~1e-8 on test data: 1e-5.
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-5)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4, abs=1e-6)
    assert ours["kid_std"] == 0.0 and ours["kid_subset_size"] == 8  # one subset of everything
    # k-NN set membership of 8 points: counts, exact unless a distance ties to 1e-7.
    assert ours["precision"] == theirs["precision"] and ours["recall"] == theirs["recall"]


def test_real_statistics_are_cached_and_a_changed_folder_gets_new_ones(standin, tmp_path):
    d = write_pngs(tmp_path / "imgs", blocky(4, seed=2))
    cfg = folder_cfg(d, tmp_path / "data")
    weights = inception.resolve_weights(standin)
    net = inception.extractor(weights, CPU)
    first = inception.real_stats(cfg, weights, net, CPU)
    assert not first.cached and first.n == 4 and first.path.is_file()
    assert first.path.parent == tmp_path / "data" / "ganctl_features"  # beside the feature-net caches
    mtime = first.path.stat().st_mtime_ns
    again = inception.real_stats(cfg, weights, net, CPU)
    assert again.cached and again.path == first.path and first.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.sigma, first.sigma)
    write_pngs(d, blocky(1, seed=3), start=4)  # one more image: a new folder key
    changed = inception.real_stats(cfg, weights, net, CPU)
    assert not changed.cached and changed.n == 5 and changed.path != first.path


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A tiny DCGAN trained 2 steps on 8 blocky 32 x 32 PNGs."""
    tmp = tmp_path_factory.mktemp("folder_run")
    d = write_pngs(tmp / "imgs", blocky(8, seed=4))
    run_dir = tmp / "run"
    overrides = [f"dataset.path={d}", f"dataset.root={tmp / 'data'}", "dataset.resolution=32", "model=dcgan"]
    overrides += ["model.width=8", "trainer=default", "trainer.steps=2", "trainer.batch_size=4"]
    run(compose("dataset=folder", *overrides, "trainer.progress=false", "trainer.device=cpu"), run_dir)
    return run_dir


def test_eval_of_a_folder_run_prints_one_line_and_reads_the_statistics_back(standin, folder_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = [str(folder_run), "--features", "inception", "--inception-weights", str(standin), "-n", "8"]
    argv += ["--batch-size", "8", "-o", str(out)]
    evaluate.main(argv)
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1 and line.startswith("fid ") and "kid " in line and "recall " in line, line
    first = json.loads(out.read_text())
    assert first["features"] == "inception" and first["inception_weights"]["published"] is False
    assert set(first["metrics"]) >= {"fid", "kid_mean", "kid_std", "precision", "recall"}
    stats = first["real_statistics"]
    assert stats["cached"] is False and stats["n"] == 8
    mtime = os.stat(stats["path"]).st_mtime_ns
    evaluate.main(argv)
    second = json.loads(out.read_text())
    assert second["real_statistics"]["cached"] is True and os.stat(stats["path"]).st_mtime_ns == mtime
    assert second["metrics"] == first["metrics"]  # same seed, same samples, same statistics


def test_a_damaged_or_foreign_weights_file_is_one_line_via_the_cli(standin, folder_run, tmp_path):
    cache = tmp_path / "cache"
    (cache / "inception").mkdir(parents=True)
    (cache / "inception" / inception.WEIGHTS_NAME).symlink_to(standin)  # the published name, another hash
    env = {"GANCTL_CACHE": str(cache), "TORCH_HOME": str(tmp_path / "torch")}
    proc = run_cli("eval", str(folder_run), "--features", "inception", env=env, timeout=120)
    assert proc.returncode == 2 and "not the published 6726825d" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    state = torch.load(standin, weights_only=True)
    state["fc.weight"] = torch.zeros(10, 2048)  # a 10-class head: not the FID network
    torch.save(state, tmp_path / "other.pth")
    proc = run_cli(
        "eval", str(folder_run), "--features", "inception", "--inception-weights", str(tmp_path / "other.pth"), env=env
    )
    assert proc.returncode == 2 and "fc.weight (10, 2048) instead of (1008, 2048)" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_missing_and_unreadable_weights_are_one_line_errors(tmp_path, monkeypatch):
    # Port 9 (discard) refuses at once: the same path as a machine without internet, without waiting.
    monkeypatch.setattr(inception, "WEIGHTS_URL", f"http://127.0.0.1:9/{inception.WEIGHTS_NAME}")
    with pytest.raises(ConfigError) as err:
        inception.resolve_weights(None)
    message = str(err.value)
    assert len(message.splitlines()) == 1
    for needle in (inception.WEIGHTS_NAME, inception.WEIGHTS_URL, "--inception-weights", inception.ENV):
        assert needle in message, message
    (tmp_path / "notes.txt").write_text("not weights")
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "part.pth")
    for path, needle in (
        (tmp_path / "notes.txt", "is not a PyTorch weights file"),
        (tmp_path / "part.pth", "missing and 0 unknown keys"),
        (tmp_path / "absent.pth", "no such file"),
    ):
        with pytest.raises(ConfigError, match=needle):
            inception.resolve_weights(path)
    monkeypatch.setenv(inception.ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(ConfigError, match=f"{inception.ENV}=.*absent.pth: no such file"):
        inception.resolve_weights(None)
    with pytest.raises(ConfigError, match="--inception-weights is read by --features inception only"):
        evaluate.main([str(tmp_path / "x.npz"), "--dataset", "mnist", "--inception-weights", "w.pth"])
