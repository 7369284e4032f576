"""The fast paths give the plain path's results: optimiser implementations, bf16, torch.compile."""
import pytest
import torch

from conftest import compose
from ganctl import checkpoint
from ganctl.train import run

TINY = ["trainer.steps=5", "trainer.log_every=5", "trainer.progress=false", "model.g_hidden=[32]",
        "model.d_hidden=[32]", "trainer.device=cpu"]


def train_weights(mnist_root, tmp_path, name, *extra):
    cfg = compose("+experiment=mnist_bce", f"dataset.root={mnist_root}", "dataset.split=test", *TINY, *extra)
    run(cfg, tmp_path / name)
    return checkpoint.load(tmp_path / name)["G"]


def max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("impl", ["single", "fused"])
def test_optimizer_implementations_agree(impl, mnist_root, tmp_path):
    ref = train_weights(mnist_root, tmp_path, "foreach", "optim.impl=foreach")
    other = train_weights(mnist_root, tmp_path, impl, f"optim.impl={impl}")
    assert max_diff(ref, other) < 1e-5


def test_bf16_autocast_close_to_fp32(mnist_root, tmp_path):
    ref = train_weights(mnist_root, tmp_path, "fp32")
    bf16 = train_weights(mnist_root, tmp_path, "bf16", "trainer.precision=bf16")
    diff = max_diff(ref, bf16)
    assert 0 < diff < 5e-3  # bf16 really ran (not identical), and stayed within rounding of fp32


def test_fp16_needs_cuda(capsys):
    from ganctl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "trainer.precision=fp16", "trainer.device=cpu"])
    assert exc.value.code == 2 and "fp16 needs a CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_matches_eager(mnist_root, tmp_path):
    """torch.compile of G and D (about a minute of compiling on 2 cores), checkpoints without prefixes."""
    ref = train_weights(mnist_root, tmp_path, "eager")
    compiled = train_weights(mnist_root, tmp_path, "compiled", "trainer.compile=true")
    assert ref.keys() == compiled.keys()
    assert max_diff(ref, compiled) < 1e-5
