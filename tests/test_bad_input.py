"""Every config key and option with wrong values: one line naming it, exit 2 (1 for the environment).

These run the CLI in-process (`ganctl.cli.main`), so the table stays fast; tests/test_cli.py runs
a few of the same cases through a real subprocess.
"""

import os

import pytest
import torch

from ganctl import files
from ganctl.cli import main
from ganctl.commands.train import run
from ganctl.errors import StorageError
from ganctl.training import checkpoint

from conftest import compose


def expect_error(capsys, argv, *needles, code=2):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code, capsys.readouterr().err
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganctl: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# (override, text the line must contain). Every key that takes a number or a choice.
TRAIN_CASES = [
    ("seed=abc", "seed"),
    ("seed=1.5", "seed"),
    ("dataset.name=cifar", "dataset.name='cifar'"),
    ("dataset.split=val", "dataset.split='val'"),
    ("dataset.mean=nan", "dataset.mean"),
    ("dataset.std=0", "dataset.std=0.0"),
    ("dataset.std=-1", "dataset.std"),
    ("dataset.samples_per_epoch=0", "dataset.samples_per_epoch=0"),
    ("dataset.range=[1,0]", "dataset.range"),
    ("dataset.download=maybe", "dataset.download"),
    ("model.arch=resnet", "model.arch='resnet'"),
    ("model.z_dim=0", "model.z_dim=0"),
    ("model.z_dim=x", "model.z_dim"),
    ("model.latent=cauchy", "model.latent='cauchy'"),
    ("model.init=zeros", "model.init='zeros'"),
    ("model.g_act=swish", "model.g_act='swish'"),
    ("model.d_act=gelu", "model.d_act='gelu'"),
    ("model.g_out=relu", "model.g_out='relu'"),
    ("model.g_norm=group", "model.g_norm='group'"),
    ("model.d_norm=instance", "model.d_norm='instance'"),
    ("model.d_features=fft", "model.d_features='fft'"),
    ("model.g_hidden=[0]", "model.g_hidden"),
    ("model.d_hidden=[-4]", "model.d_hidden"),
    ("model.d_dropout=1.0", "model.d_dropout=1.0"),
    ("model.width=0", "model.width=0"),
    ("loss=foo", "loss='foo'"),
    ("loss.gp_weight=-1", "loss.gp_weight"),
    ("loss.d_batch=mixed", "loss.d_batch"),
    ("optim=adagrad", "optim='adagrad'"),
    ("optim.lr=-1", "optim.lr=-1.0"),
    ("optim.lr=0", "optim.lr=0.0"),
    ("optim.lr=inf", "optim.lr=inf"),
    ("optim.lr=fast", "optim.lr"),
    ("optim.betas=[0.5]", "optim.betas"),
    ("optim.betas=[0.5,1.5]", "optim.betas"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.momentum=1.5", "optim.momentum=1.5"),
    ("optim.impl=cuda_graph", "optim.impl"),
    ("optim.g.lr=-3", "optim.g.lr=-3.0"),
    ("optim.d.lr=0", "optim.d.lr=0.0"),
    ("optim.d.name=lbfgs", "optim.d.name"),
    ("trainer=slow", "trainer='slow'"),
    ("trainer.steps=0", "trainer.steps=0"),
    ("trainer.steps=-5", "trainer.steps"),
    ("trainer.steps=ten", "trainer.steps"),
    ("trainer.epochs=-1", "trainer.epochs"),
    ("trainer.batch_size=0", "trainer.batch_size=0"),
    ("trainer.d_steps=0", "trainer.d_steps=0"),
    ("trainer.g_steps=0", "trainer.g_steps=0"),
    ("trainer.log_every=0", "trainer.log_every=0"),
    ("trainer.sample_every=0", "trainer.sample_every=0"),
    ("trainer.ckpt_every=-1", "trainer.ckpt_every"),
    ("trainer.num_samples=0", "trainer.num_samples=0"),
    ("trainer.device=tpu", "trainer.device='tpu'"),
    ("trainer.device=cuda:3", "trainer.device='cuda:3'"),
    ("trainer.on_nan=ignore", "trainer.on_nan"),
    ("trainer.cpu_matmul=mkl", "trainer.cpu_matmul='mkl'"),
    ("trainer.backward=fast", "trainer.backward='fast'"),
    ("trainer.max_nan_skips=0", "trainer.max_nan_skips=0"),
    ("trainer.bogus=1", "trainer.bogus"),
    ("checkpoints.keep_last=0", "checkpoints.keep_last=0"),
    ("model=transformer", "model='transformer'"),
    ("dataset=celeba", "dataset='celeba'"),
    ("+experiment=nope", "experiment='nope'"),
]


@pytest.mark.parametrize("override, needle", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_bad_train_value(override, needle, capsys, tmp_path):
    run_dir = tmp_path / "run"
    expect_error(capsys, ["train", override, f"hydra.run.dir={run_dir}"], needle)
    assert not run_dir.exists()


def test_cross_field_rules(capsys, tmp_path):
    expect_error(
        capsys, ["train", "loss=wgan_gp", "model=dcgan", "dataset=svhn", "model.d_norm=batch"], "wgan_gp", "d_norm"
    )
    expect_error(capsys, ["train", "model=dcgan"], "model.arch='dcgan'", "gaussian1d")
    expect_error(capsys, ["train", "loss=hinge", "loss.d_batch=shuffled"], "loss.d_batch")
    expect_error(
        capsys,
        ["train", "+experiment=mnist_bce", "loss=wgan_gp", "trainer.backward=manual"],
        "trainer.backward=manual does not support loss=wgan_gp",
    )
    expect_error(
        capsys,
        ["train", "trainer.backward=manual", "loss.d_batch=shuffled"],
        "trainer.backward=manual does not support model.d_features=moments with loss.d_batch=shuffled",
    )


def test_several_problems_one_line_each(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "optim.lr=-1", "trainer.batch_size=0"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("ganctl: error: ") for ln in lines)


def test_missing_dataset_and_oversized_batch(capsys, tmp_path, mnist_root):
    expect_error(
        capsys,
        ["train", "dataset=mnist", "model=mlp", f"dataset.root={tmp_path}", "dataset.download=false"],
        str(tmp_path / "MNIST" / "raw"),
        "t10k" if False else "train-images-idx3-ubyte.gz",
    )
    expect_error(
        capsys,
        ["train", "dataset=svhn", "model=dcgan", f"dataset.root={tmp_path}", "dataset.download=false"],
        "train_32x32.mat",
    )
    expect_error(
        capsys,
        [
            "train",
            "+experiment=mnist_bce",
            f"dataset.root={mnist_root}",
            "dataset.split=test",
            "trainer.batch_size=10001",
        ],
        "trainer.batch_size=10001",
        "10000",
    )
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x01" + b"\0" * 12)
    expect_error(capsys, ["train", "dataset=mnist", "model=mlp", f"dataset.root={tmp_path}"], "not an MNIST image file")


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    expect_error(capsys, ["train", f"hydra.run.dir={blocker}/run"], str(blocker), "not a writable folder", code=1)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    run(
        compose("trainer.steps=2", "trainer.log_every=1", "trainer.progress=false", "dataset.samples_per_epoch=1000"),
        run_dir,
    )
    return run_dir


def test_bad_checkpoint_paths(capsys, tmp_path, tiny_ckpt):
    last = tiny_ckpt / "checkpoints" / "last.pt"
    cases = [(tmp_path / "missing.pt", "does not exist"), (tmp_path, "no checkpoints/last.pt")]
    (tmp_path / "text.pt").write_text("hello")
    cases.append((tmp_path / "text.pt", "not a readable ganctl checkpoint"))
    (tmp_path / "cut.pt").write_bytes(last.read_bytes()[:5000])
    cases.append((tmp_path / "cut.pt", "not a readable ganctl checkpoint"))
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    cases.append((tmp_path / "other.pt", "not a ganctl checkpoint"))
    newer = torch.load(last, weights_only=True)
    newer["format_version"] = checkpoint.FORMAT_VERSION + 1
    torch.save(newer, tmp_path / "newer.pt")
    cases.append((tmp_path / "newer.pt", "newer than this ganctl reads"))
    for path, needle in cases:
        expect_error(capsys, ["sample", str(path)], str(path.name), needle)
        expect_error(capsys, ["train", f"resume={path}"], needle)


SAMPLE_CASES = [
    (["-n", "0"], "-n 0"),
    (["-n", "many"], "-n"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--seed", "x"], "--seed"),
    (["--truncation", "-1"], "--truncation"),
    (["--nrow", "0"], "--nrow 0"),
    (["--device", "tpu"], "--device='tpu'"),
    (["--device", "cuda"], "--device='cuda'"),
    (["-o", "out.jpg"], ".jpg"),
    (["--wat"], "--wat"),
]


@pytest.mark.parametrize("args, needle", SAMPLE_CASES, ids=[" ".join(a) for a, _ in SAMPLE_CASES])
def test_bad_sample_option(args, needle, capsys, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expect_error(capsys, ["sample", str(tiny_ckpt), *args], needle)
    assert os.listdir(tmp_path) == []


def test_resume_rejects_sweeps_and_finished_runs(capsys, tiny_ckpt):
    expect_error(capsys, ["train", f"resume={tiny_ckpt}", "optim.lr=1e-3,2e-3"], "sweep")
    expect_error(capsys, ["train", f"resume={tiny_ckpt}", "optim.lr=-1"], "optim.lr=-1.0")


def test_failed_write_leaves_previous_checkpoint(tiny_ckpt, monkeypatch):
    """A full disk during a checkpoint write: StorageError naming the file, the old last.pt intact,
    no temporary file left. (torch itself reports such a write as a RuntimeError; tests/test_faults.py
    meets that on a real full disk and a real file-size limit.)"""
    last = tiny_ckpt / "checkpoints" / "last.pt"
    before = last.read_bytes()

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(StorageError, match=r"last\.pt: no space left on the device \[ENOSPC\]"):
        checkpoint.save(last, {"step": 99})
    assert last.read_bytes() == before
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".") and p.name != files.LOCK_NAME]


def test_overwrite_flag(capsys, tiny_ckpt):
    expect_error(capsys, ["train", "overwrite=maybe"], "overwrite=maybe is invalid", "overwrite=true")
    expect_error(capsys, ["train", f"resume={tiny_ckpt}", "overwrite=true"], "overwrite=true", "resume=")


def test_training_into_a_finished_run_is_refused(capsys, tiny_ckpt):
    before = sorted((p, p.stat().st_mtime_ns) for p in tiny_ckpt.rglob("*") if p.name != ".ganctl.lock")
    expect_error(
        capsys,
        ["train", "trainer.steps=2", f"hydra.run.dir={tiny_ckpt}"],
        str(tiny_ckpt),
        "already holds a ganctl run",
        f"resume={tiny_ckpt}",
        "hydra.run.dir=",
        "overwrite=true",
    )
    assert sorted((p, p.stat().st_mtime_ns) for p in tiny_ckpt.rglob("*") if p.name != ".ganctl.lock") == before
    assert not files.holds_lock(tiny_ckpt)


def test_a_cache_that_cannot_be_written_falls_back_to_the_next_folder(tmp_path):
    """A refused atomic write (here: the cache path is a folder, so the rename fails) is a
    StorageError; the feature and Inception caches must still move on to the user's folder."""
    blocked = tmp_path / "data" / "stats.pt"
    blocked.mkdir(parents=True)
    fallback = tmp_path / "cache" / "stats.pt"
    written = files.write_first_writable([blocked, fallback], lambda f: f.write(b"x"))
    assert written == fallback and fallback.read_bytes() == b"x" and blocked.is_dir()
    assert files.write_first_writable([blocked], lambda f: f.write(b"x")) is None
    assert not [p for p in blocked.parent.iterdir() if p.name.startswith(".")]  # no temporary left
