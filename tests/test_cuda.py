"""CUDA paths, run by `pytest -m cuda` on a machine with a GPU (make gpu-check); skipped elsewhere.

They use generated SVHN-format data and the 1-D Gaussian: ../shared does not travel to GPU machines.
"""

import csv
import math

import pytest
import torch

from ganctl.commands.train import run
from ganctl.errors import ConfigError
from ganctl.training import checkpoint

from conftest import compose

pytestmark = pytest.mark.cuda


def last_row(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))[-1]


def train(tmp_path, name, *overrides, steps=20):
    run_dir = tmp_path / name
    run(
        compose(
            *overrides,
            f"trainer.steps={steps}",
            "trainer.log_every=10",
            "trainer.progress=false",
            "trainer.device=cuda",
        ),
        run_dir,
    )
    row = last_row(run_dir)
    assert int(row["step"]) == steps
    assert all(math.isfinite(float(row[k])) for k in ("d_loss", "g_loss", "d_real", "d_fake")), row
    return run_dir, row


def test_mlp_trains_on_cuda_and_samples_on_cpu(svhn_root, tmp_path):
    run_dir, _ = train(tmp_path, "mlp", "+experiment=mnist_bce", f"dataset.root={svhn_root}", "dataset=svhn")
    ckpt = checkpoint.load(run_dir, map_location="cpu")
    assert all(t.device.type == "cpu" for t in ckpt["G"].values())
    model = checkpoint.load_generator(run_dir, torch.device("cpu"))
    assert model.G(torch.randn(4, model.cfg.model.z_dim)).shape == (4, 3, 32, 32)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_wgan_gp_in_reduced_precision(precision, svhn_root, tmp_path):
    """fp16 scales the penalty's inner gradient (AMP's recipe); the critic's scores are averaged in fp32."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no native bf16 on this GPU")
    _, row = train(
        tmp_path,
        precision,
        "+experiment=svhn_wgan_gp",
        f"dataset.root={svhn_root}",
        f"trainer.precision={precision}",
        "trainer.batch_size=32",
    )
    assert 0 < float(row["grad_norm"]) < 1e4


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training(mode, svhn_root, tmp_path):
    """reduce-overhead replays CUDA graphs: the logged scores must be copies, not replayed buffers."""
    _, row = train(
        tmp_path,
        mode,
        "+experiment=svhn_wgan_gp",
        f"dataset.root={svhn_root}",
        "trainer.compile=true",
        f"trainer.compile_mode={mode}",
        "trainer.batch_size=32",
        steps=30,
    )
    assert 0 < float(row["grad_norm"]) < 1e4


def test_channels_last_conv(svhn_root, tmp_path):
    train(
        tmp_path,
        "cl",
        "+experiment=svhn_wgan_gp",
        f"dataset.root={svhn_root}",
        "trainer.channels_last=true",
        "trainer.batch_size=32",
    )


def test_more_devices_than_gpus_is_a_ganctl_error():
    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"trainer.devices={n + 1} but this machine has {n} CUDA"):
        run(
            compose(f"trainer.devices={n + 1}", "trainer.device=cuda", "trainer.batch_size=500", "trainer.steps=1"),
            "/nonexistent",
        )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpu_ddp(tmp_path):
    train(tmp_path, "ddp", "trainer.devices=2", "trainer.check_replicas=true", steps=20)


def test_torchrun_cpu_run_on_a_gpu_machine_uses_gloo(tmp_path):
    """trainer.device=cpu under torchrun on a CUDA machine: NCCL cannot reduce CPU tensors."""
    from test_distributed import torchrun

    proc = torchrun(
        tmp_path / "tr", "trainer.steps=2", "trainer.log_every=2", "trainer.batch_size=100", "trainer.device=cpu"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
