"""Checkpoints written by the code before the training redesign (tests/fixtures/README.md) still
sample, interpolate, evaluate and resume, with the numbers that code computed."""

from pathlib import Path

import pytest
import torch

from ganctl.cli import resume_config
from ganctl.commands.train import run
from ganctl.generation import generate, seeded
from ganctl.training import checkpoint
from ganctl.training.checkpoint import load_generator

from conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = torch.load(FIXTURES / "v1_expected.pt", weights_only=True)


@pytest.mark.parametrize(
    "name, key, n",
    [("v1_mnist_mlp.pt", "mnist_samples_seed0_n4", 4), ("v1_gaussian1d.pt", "gaussian1d_samples_seed0_n8", 8)],
)
def test_old_checkpoint_samples_what_it_sampled(name, key, n):
    """The old code ran these tiny G's through its oneDNN layer or the BLAS; now the BLAS: the
    same products in another order, so fp32 rounding of a few ulps of each output."""
    model = load_generator(FIXTURES / name, torch.device("cpu"))
    assert model.ema  # the fixtures kept G_ema, which sampling prefers
    x = generate(model.G, seeded(n, model.cfg.model, 0))
    torch.testing.assert_close(x, EXPECTED[key], rtol=1e-5, atol=1e-6)


# The fixture was written on an AMD EPYC; MKL takes other kernels on other CPUs (AVX2 or AVX-512
# paths, AMX on Intel), whose sums of the same 500 rows round in another order. On an Intel Xeon
# one of D's tensors came back 2.7e-8 of its largest entry away (a few ulps, plain SGD carrying
# them unamplified); every other tensor was bitwise equal. A changed random draw moves G by
# 6.6e-6 and D by 2.2e-4 of their largest entries, so 1e-6 tells the two apart with room each way.
CROSS_CPU_ROUNDING = 1e-6


def test_old_checkpoint_resumes_bit_for_bit(tmp_path):
    """20 steps (old code) + 20 steps (this code) equal the old code's own 20 + 20: the random
    draws, the data order and the update arithmetic are unchanged for setup 002's autograd step.
    Bit for bit where the kernels sum in the fixture's order; within CROSS_CPU_ROUNDING elsewhere."""
    ckpt = checkpoint.load(FIXTURES / "v1_gaussian1d.pt")
    cfg, changed = resume_config(ckpt, ["trainer.steps=40"])
    assert changed == ["trainer.steps: 20 -> 40"]
    run(cfg, tmp_path / "resumed", resume=ckpt)
    resumed = checkpoint.load(tmp_path / "resumed")
    for net in ("G", "D"):
        want = EXPECTED[f"gaussian1d_resumed_step40_{net}"]
        for k in want:
            diff = (resumed[net][k] - want[k]).abs().max().item()
            assert diff <= CROSS_CPU_ROUNDING * want[k].abs().max().item(), (net, k, diff)


def test_old_checkpoint_through_the_cli(tmp_path, mnist_root):
    """sample, interpolate and eval (and resume, above) accept the old files as users call them."""
    mnist = str(FIXTURES / "v1_mnist_mlp.pt")
    proc = run_cli("sample", mnist, "-n", "16", "-o", str(tmp_path / "grid.png"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "grid.png").stat().st_size > 0
    proc = run_cli(
        "interpolate", mnist, "--rows", "2", "--steps", "4", "-o", str(tmp_path / "walk.gif"), "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "eval", str(FIXTURES / "v1_gaussian1d.pt"), "-n", "500", "-o", str(tmp_path / "e.json"), "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads((tmp_path / "e.json").read_text())
    assert report["step"] == 20 and 0 <= report["metrics"]["ks_statistic"] <= 1
