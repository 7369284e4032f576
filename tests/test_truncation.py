"""--truncation for interpolate and the API, beside sample's (tests/test_sample.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ganctl
from ganctl.commands import interpolate
from ganctl.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


def walk(run_dir, out: Path, *extra: str) -> torch.Tensor:
    interpolate.main([str(run_dir), "--rows", "3", "--steps", "6", "-o", str(out), "--device", "cpu", *extra])
    return torch.load(out)


def test_a_truncated_walk_stays_near_the_typical_sample(mnist_run, tmp_path):
    """With |z| <= 0.01 every latent on the path is within 0.01 * sqrt(64) = 0.08 of the origin, so
    every frame is nearly G(0): the frames differ far less than an untruncated walk's, whose
    endpoints are independent N(0, I) draws (|z| ~ 8)."""
    free = walk(mnist_run, tmp_path / "free.pt")
    tight = walk(mnist_run, tmp_path / "tight.pt", "--truncation", "0.01")
    assert tight.shape == free.shape == (3, 6, 1, 28, 28)
    spread = lambda x: (x - x.mean(dim=(0, 1), keepdim=True)).abs().max().item()  # noqa: E731
    assert spread(tight) < 0.1 * spread(free)
    again = walk(mnist_run, tmp_path / "again.pt", "--truncation", "0.01")
    assert torch.equal(again, tight)  # a seed and a T give the same walk


def test_truncation_refusals_are_one_line(mnist_run, tmp_path):
    z = tmp_path / "z.pt"
    torch.save(torch.randn(2, 64), z)
    with pytest.raises(ConfigError, match="--truncation redraws random latents and --from gives"):
        walk(mnist_run, tmp_path / "a.pt", "--truncation", "1", "--from", str(z))
    with pytest.raises(ConfigError, match="--truncation 0.0 is invalid; accepted: a number > 0"):
        walk(mnist_run, tmp_path / "b.pt", "--truncation", "0")
    old_uniform = str(FIXTURES / "v1_gaussian1d.pt")  # setup 002 draws uniform latents
    with pytest.raises(ConfigError, match="applies to Gaussian latents"):
        walk(old_uniform, tmp_path / "c.pt", "--truncation", "1")


def test_api_sample_truncates_and_refuses_what_it_cannot(mnist_run):
    G = ganctl.load(mnist_run)
    assert torch.equal(G.sample(8, seed=1, truncation=0.5), G.sample(8, seed=1, truncation=0.5))
    assert not torch.equal(G.sample(8, seed=1, truncation=0.5), G.sample(8, seed=1))
    with pytest.raises(ConfigError, match="truncation=0 is invalid"):
        G.sample(8, truncation=0)
    with pytest.raises(ConfigError, match="applies to Gaussian latents"):
        ganctl.load(FIXTURES / "v1_gaussian1d.pt").sample(8, truncation=1.0)


def test_eval_scores_truncated_samples(mnist_run, tmp_path):
    """`ganctl eval --truncation T` scores the samples `sample --truncation T` draws, and says so."""
    import json

    import numpy as np

    from ganctl.commands import evaluate

    args = [str(mnist_run), "-n", "200", "--pr-samples", "100", "--device", "cpu"]
    evaluate.main([*args, "--truncation", "0.5", "-o", str(tmp_path / "t.json")])
    evaluate.main([*args, "-o", str(tmp_path / "f.json")])
    truncated, free = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "tf")
    assert (truncated["truncation"], free["truncation"]) == (0.5, None)
    assert truncated["metrics"]["fd"] != free["metrics"]["fd"]
    np.savez(tmp_path / "s.npz", np.zeros((4, 28, 28), dtype=np.uint8))
    with pytest.raises(ConfigError, match="--truncation draws latents"):
        evaluate.main([str(tmp_path / "s.npz"), "--dataset", "mnist", "--truncation", "1"])
