"""The real `ganctl` command in a subprocess: a full run, sampling, sweeps and bad input."""

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli


@pytest.fixture(scope="module")
def mnist_run(mnist_root, tmp_path_factory):
    """mnist_bce for 30 steps on the real test split, through the CLI."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli(
        "train",
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.steps=30",
        "trainer.log_every=10",
        "trainer.sample_every=15",
        "trainer.ckpt_every=15",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr
    assert str(run_dir) in proc.stdout
    return run_dir


def test_train_writes_everything(mnist_run):
    assert (mnist_run / ".hydra" / "config.yaml").is_file()
    rows = list(csv.DictReader(open(mnist_run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    for r in rows:
        for key in ("d_loss", "g_loss", "d_real", "d_fake", "time", "steps_per_s", "epoch"):
            assert math.isfinite(float(r[key])), key
        assert 0 < float(r["d_real"]) < 1 and 0 < float(r["d_fake"]) < 1
    for step in (15, 30):
        grid = Image.open(mnist_run / "samples" / f"step_{step:06d}.png")
        grid.load()
        assert grid.size == (8 * 30 + 2, 8 * 30 + 2) and grid.mode == "L"
        assert (mnist_run / "checkpoints" / f"step_{step:06d}.pt").is_file()
    ckpt = torch.load(mnist_run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 30 and ckpt["format_version"] == 1
    assert ckpt["config"]["model"]["g_hidden"] == [256, 256] and ckpt["config"]["optim"]["lr"] == 2e-4
    assert ckpt["G"]["net.0.weight"].shape == (256, 64) and ckpt["D"]["net.1.weight"].shape == (256, 784)
    for key in ("opt_g", "opt_d", "rng", "sampler", "fixed_z"):
        assert key in ckpt
    assert not list(mnist_run.rglob(".*.tmp*")), "temporary files left behind"


def test_sample_grid_and_npz(mnist_run, tmp_path):
    proc = run_cli("sample", str(mnist_run / "checkpoints" / "last.pt"), "-n", "64", "-o", str(tmp_path / "s.png"))
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "s.png").size == (8 * 30 + 2, 8 * 30 + 2)
    proc = run_cli("sample", str(mnist_run), "-n", "200", "-o", str(tmp_path / "s.npz"), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    arr = np.load(tmp_path / "s.npz")["arr_0"]
    assert arr.shape == (200, 28, 28) and arr.dtype == np.uint8 and arr.max() > arr.min()
    again = run_cli("sample", str(mnist_run), "-n", "200", "-o", str(tmp_path / "t.npz"), "--seed", "3")
    assert again.returncode == 0
    assert np.array_equal(arr, np.load(tmp_path / "t.npz")["arr_0"])


def test_multirun_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train",
        "-m",
        "optim.lr=1e-4,2e-4",
        "trainer.steps=20",
        "trainer.log_every=10",
        "trainer.progress=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.pt").is_file()
        assert len(list(csv.DictReader(open(sweep / job / "metrics.csv")))) == 2
    lrs = {
        torch.load(sweep / j / "checkpoints" / "last.pt", weights_only=True)["config"]["optim"]["lr"]
        for j in ("0", "1")
    }
    assert lrs == {1e-4, 2e-4}


def test_help():
    top = run_cli("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("train", "sample", "interpolate"))
    train = run_cli("train", "--help")
    assert train.returncode == 0
    for group in ("dataset", "model", "loss", "optim", "trainer", "experiment"):
        assert group in train.stdout


def one_error_line(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ganctl: error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


BAD_TRAIN = [
    (["loss=foo"], ["'foo'", "bce", "wgan_gp"]),
    (["optim.lr=-1"], ["optim.lr=-1.0", "> 0"]),
    (["optim.lr=0"], ["optim.lr=0.0", "> 0"]),
    (["optim.lr=fast"], ["optim.lr", "fast"]),
    (["trainer.steps=0"], ["trainer.steps=0", ">= 1"]),
    (["trainer.device=cuda"], ["trainer.device='cuda'", "accepted: auto, cpu"]),
    (["trainer.device=tpu"], ["trainer.device='tpu'", "accepted"]),
    (["trainer.nonsense=1"], ["trainer.nonsense"]),
    (["+experiment=nope"], ["experiment='nope'", "mnist_bce"]),
]


@pytest.mark.parametrize("overrides, needles", BAD_TRAIN, ids=[o[0] for o, _ in BAD_TRAIN])
def test_bad_train_input(overrides, needles, tmp_path):
    run_dir = tmp_path / "run"
    one_error_line(run_cli("train", *overrides, f"hydra.run.dir={run_dir}"), *needles)
    assert not run_dir.exists(), "a run folder was created for a config that cannot run"


def test_batch_larger_than_dataset(mnist_root, tmp_path):
    proc = run_cli(
        "train",
        "+experiment=mnist_bce",
        f"dataset.root={mnist_root}",
        "dataset.split=test",
        "trainer.batch_size=20000",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    one_error_line(proc, "trainer.batch_size=20000", "10000")
    assert not (tmp_path / "run").exists()


def test_missing_dataset_offline(tmp_path):
    proc = run_cli(
        "train",
        "+experiment=mnist_bce",
        f"dataset.root={tmp_path}",
        "dataset.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    one_error_line(proc, str(tmp_path / "MNIST" / "raw"), "train-images-idx3-ubyte.gz")


def test_bad_checkpoints(tmp_path, mnist_run):
    one_error_line(run_cli("sample", str(tmp_path / "nope.pt")), "nope.pt", "does not exist")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    one_error_line(run_cli("sample", str(tmp_path / "notes.pt")), "notes.pt", "not a readable ganctl checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    one_error_line(run_cli("sample", str(tmp_path / "foreign.pt")), "foreign.pt", "not a ganctl checkpoint")
    data = (mnist_run / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    one_error_line(run_cli("sample", str(tmp_path / "cut.pt")), "cut.pt")
    one_error_line(run_cli("sample", str(tmp_path)), "no checkpoints/last.pt")


def test_bad_sample_options(mnist_run, tmp_path):
    one_error_line(run_cli("sample", str(mnist_run), "-n", "0"), "-n 0")
    one_error_line(run_cli("sample", str(mnist_run), "-o", str(tmp_path / "x.jpg")), ".jpg", ".npz")
    (tmp_path / "exists.png").write_bytes(b"keep")
    one_error_line(run_cli("sample", str(mnist_run), "-o", str(tmp_path / "exists.png")), "--force")
    assert (tmp_path / "exists.png").read_bytes() == b"keep"
    one_error_line(run_cli("sample", str(mnist_run), "--bogus"), "--bogus")
