"""Scores for any image data (issue #25): the self-supervised rotation features fitted on a folder and
their cache, `--features auto`, KID, `ganctl eval` of a folder run, and trainer.eval_every on a
folder: best.pt, metrics.csv, curves.png and a resume that keeps the best so far."""

import csv
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import features
from ganctl.commands import evaluate
from ganctl.commands.train import run
from ganctl.config import DatasetConfig
from ganctl.errors import ConfigError, DataError
from ganctl.launch.resume import resume_config
from ganctl.training import checkpoint
from ganctl.training.validate import validate

from conftest import compose, run_cli

CPU = torch.device("cpu")


def write_folder(path, n=64, seed=0, classes=None):
    """n 16 px greyscale L shapes at random places: upright, so a rotation is visible; with
    `classes`, spread over those subfolders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        x = np.zeros((16, 16), np.uint8)
        a, b = rng.integers(1, 6, 2)
        x[a : a + 9, b : b + 2] = 255
        x[a + 7 : a + 9, b : b + 6] = 200
        sub = path / classes[i % len(classes)] if classes else path
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(sub / f"{i:03d}.png")
    return path


def folder_cfg(path, root, **kw) -> DatasetConfig:
    return DatasetConfig(name="folder", path=str(path), root=str(root), resolution=16, **kw)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A folder of L shapes and a data root, shared by the module: the selfsup net is fitted once."""
    base = tmp_path_factory.mktemp("selfsup")
    return write_folder(base / "imgs"), base / "data"


def test_selfsup_features_fit_cache_and_refit_on_a_changed_folder(shapes, monkeypatch, capsys):
    imgs, root = shapes
    cfg = folder_cfg(imgs, root)
    # 300 updates learn these shapes' rotations; the default floor of 1,500 is for real images.
    monkeypatch.setattr(features, "MIN_SELFSUP_UPDATES", 300)
    start = time.perf_counter()
    model = features.load_or_fit(cfg, CPU, progress=True, task=features.SELFSUP)
    seconds = time.perf_counter() - start
    # 58 training images are one update an epoch: a progress line every 5 s and the last, not 300.
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "updates, loss" in ln]
    assert 1 <= len(lines) <= 1 + seconds / features.PROGRESS_EVERY_S and " 300/300 updates" in lines[-1], lines
    # In the folder's own pack folder, named by the folder's cache key; the rotations of upright
    # L shapes are easy to tell apart (chance is 25%).
    assert model.path.parent.parent == root / "folder-cache" and model.path.name == "features_selfsup.pt"
    assert model.task == features.SELFSUP and model.num_classes == 4 and model.accuracy > 0.6

    def no_fit(*a, **kw):
        raise AssertionError("refitted although the cache matches the folder")

    with monkeypatch.context() as m:
        m.setattr(features, "fit", no_fit)
        cached = features.load_or_fit(cfg, CPU, progress=False, task=features.SELFSUP)
    assert cached.path == model.path and np.array_equal(cached.mu, model.mu)

    # One image more: a new pack, whose features are fitted anew beside it.
    write_folder(imgs / "more", n=1, seed=5)
    assert features.load_cached(cfg, CPU, task=features.SELFSUP) is None
    refit = features.load_or_fit(cfg, CPU, progress=False, task=features.SELFSUP)
    assert refit.path != model.path and refit.path.is_file() and refit.checksum != model.checksum
    (imgs / "more" / "000.png").unlink()
    (imgs / "more").rmdir()


def test_samples_scored_against_a_folder(shapes, tmp_path, capsys):
    """`--dataset folder --data-path DIR`: the folder's own images score far below pixel noise."""
    imgs, root = shapes
    real = features.real_images(folder_cfg(imgs, root))[:, 0].numpy()
    noise = np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)
    scores = {}
    for name, x in (("real", real), ("noise", noise)):
        np.savez(tmp_path / f"{name}.npz", x)
        out = tmp_path / f"{name}.json"
        args = [str(tmp_path / f"{name}.npz"), "--dataset", "folder", "--data-path", str(imgs)]
        evaluate.main([*args, "--data-root", str(root), "--device", "cpu", "-o", str(out)])
        scores[name] = json.loads(out.read_text())
    assert scores["real"]["features"] == "selfsup"  # auto, for a folder without labels
    # The images the statistics were taken from, against noise the net never saw: far apart.
    assert scores["real"]["metrics"]["fd"] * 10 < scores["noise"]["metrics"]["fd"], scores
    with pytest.raises(ConfigError, match="--dataset folder needs --data-path DIR"):
        evaluate.main([str(tmp_path / "real.npz"), "--dataset", "folder"])
    with pytest.raises(ConfigError, match="a folder has one split"):
        evaluate.main([*args, "--split", "test"])
    with pytest.raises(DataError, match="the classifier features need two classes or more"):
        evaluate.main([*args, "--data-root", str(root), "--features", "ganctl"])


def test_classifier_features_for_a_folder_with_subfolder_labels(tmp_path):
    """Two subfolders: a two-class classifier, whose scores count two classes."""
    d = write_folder(tmp_path / "two", n=40, classes=["a", "b"])
    for path in (d / "b").iterdir():  # class b: the L shapes upside down
        Image.fromarray(np.asarray(Image.open(path))[::-1].copy()).save(path)
    cfg = folder_cfg(d, tmp_path / "data", labels="subfolders")
    model = features.load_or_fit(cfg, CPU, progress=False, task=features.choose(cfg, "auto"))
    assert model.task == features.CLASSES and model.num_classes == 2 and model.net.head.out_features == 2
    assert model.path.name == "features_ganctl.pt" and model.path.parent.parent == tmp_path / "data" / "folder-cache"
    scores = features.image_metrics(features.real_images(cfg), model, CPU, 500, 10, 0, kid_subsets=2)
    assert 1.0 <= scores["classifier_score"] <= 2.0 and len(scores["class_shares"]) == 2


def test_auto_picks_the_classifier_where_the_data_has_labels(tmp_path):
    assert features.choose(DatasetConfig(name="mnist", root=str(tmp_path)), "auto") == features.CLASSES
    plain = write_folder(tmp_path / "plain", n=4)
    assert features.choose(folder_cfg(plain, tmp_path / "d"), "auto") == features.SELFSUP
    two = write_folder(tmp_path / "two", n=4, classes=["a", "b"])
    assert features.choose(folder_cfg(two, tmp_path / "d", labels="subfolders"), "auto") == features.CLASSES
    one = write_folder(tmp_path / "one", n=4, classes=["a"])  # one class cannot train a classifier
    assert features.choose(folder_cfg(one, tmp_path / "d", labels="subfolders"), "auto") == features.SELFSUP
    assert features.choose(folder_cfg(one, tmp_path / "d"), "selfsup") == features.SELFSUP
    bad = compose("dataset=folder", f"dataset.path={plain}", "trainer.eval_every=100", "trainer.eval_features=ganctl")
    with pytest.raises(ConfigError, match="selfsup or auto for data without class labels"):
        validate(bad)
    with pytest.raises(ConfigError, match="auto, ganctl or selfsup during training"):
        validate(compose("+experiment=mnist_best", "trainer.eval_every=500", "trainer.eval_features=inception"))


def rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_folder_run_evaluates_keeps_best_and_resumes_with_the_best_so_far(shapes, tmp_path):
    imgs, root = shapes
    run_dir = tmp_path / "run"
    base = [
        "dataset=folder",
        f"dataset.path={imgs}",
        f"dataset.root={root}",
        "dataset.resolution=16",
        "model.width=8",
        "trainer.batch_size=16",
        "trainer.log_every=2",
        "trainer.eval_every=2",
        "trainer.eval_samples=64",
        "trainer.progress=false",
        "trainer.device=cpu",
    ]
    # The real CLI for the first half, as a user trains (image data gets the modern recipe).
    proc = run_cli("train", *base, "trainer.steps=4", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = rows(run_dir)
    assert [r["step"] for r in first] == ["2", "4"] and all(np.isfinite(float(r["fd"])) for r in first)
    assert all(float(r["kid"]) > 0 for r in first) and "classifier_score" not in first[0]
    best_before = min(float(r["fd"]) for r in first)
    best = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    assert best["best_metric"] == pytest.approx(best_before, rel=1e-12)
    assert (run_dir / "curves.png").is_file()

    # The resume path of test_resume, from a checkpoint whose generators were made to draw
    # saturated pixel patterns (the output layer's weights x 1000 under tanh: no gradient brings
    # them back in 4 steps; fd ~1400 against ~1000 for the 4-step G). The evaluations after the
    # resume score worse than the best before it, so best.pt must stay.
    ckpt = checkpoint.load(run_dir)
    for g in ("G", "G_ema"):
        ckpt[g]["net.3.weight"].mul_(1000.0)
    cfg, _ = resume_config(ckpt, ["trainer.steps=8"])
    run(cfg, run_dir, resume=ckpt)
    after = rows(run_dir)
    fds = {int(r["step"]): float(r["fd"]) for r in after}
    assert sorted(fds) == [2, 4, 6, 8] and min(fds[6], fds[8]) > best_before, fds
    best = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    assert best["step"] in (2, 4) and best["best_metric"] == pytest.approx(best_before, rel=1e-12)
    with Image.open(run_dir / "curves.png") as picture:  # losses, D outputs, fd and kid panels
        assert picture.height > 4 * 250

    # ganctl eval of the folder run through the real CLI: auto picks selfsup for unlabelled images.
    proc = run_cli("eval", str(run_dir), "-n", "64", "--device", "cpu", "-o", str(tmp_path / "e.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["features"] == "selfsup" and report["dataset"] == "folder"
    assert np.isfinite(report["metrics"]["fd"]) and report["metrics"]["fd"] > 0
    assert "selfsup features" in proc.stdout and len(proc.stdout.strip().splitlines()) == 1
