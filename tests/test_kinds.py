"""One record per dataset (data.DATASETS) and one place that draws and scores by its kind (kinds.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganctl
from ganctl import kinds
from ganctl.commands.train import run
from ganctl.data import DATASETS, IMAGES, POINTS_1D, POINTS_2D

from conftest import TINY, compose


def test_every_dataset_yaml_has_a_record_with_a_kind():
    from ganctl.cli import conf_dir

    names = {p.stem for p in (conf_dir() / "dataset").glob("*.yaml")}
    assert names == set(DATASETS)
    assert {kinds.of(name).name for name in DATASETS} == {POINTS_1D, POINTS_2D, IMAGES}
    assert kinds.of("ring8").name == POINTS_2D and kinds.of("gaussian1d").name == POINTS_1D


@pytest.fixture(scope="module")
def ring8_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ring8_run")
    run(compose("+experiment=ring8", *TINY), run_dir)
    return run_dir


def test_api_grid_of_a_2d_mixture_is_the_scatter_over_its_modes(ring8_run):
    """The API drew ring8's points as a flattened 1-D histogram against an unused N(4, std)."""
    G = ganctl.load(ring8_run)
    x = G.sample(64, seed=3)
    assert x.shape == (64, 2)
    picture = np.asarray(G.grid(64, seed=3))
    scatter = np.asarray(kinds.of("ring8").picture(x, G.cfg.dataset, "ring8"))
    histogram = np.asarray(kinds.of("gaussian1d").picture(x.reshape(-1, 1), G.cfg.dataset, "64 samples"))
    assert picture.shape == scatter.shape and (picture == scatter).all()
    assert picture.shape != histogram.shape or (picture != histogram).any()


def test_points_write_every_output_type(ring8_run, tmp_path):
    G = ganctl.load(ring8_run)
    x = G.sample(10, seed=0)
    kind = kinds.of(G.cfg.dataset)
    for suffix in kind.outputs:
        out = tmp_path / f"s{suffix}"
        kind.write(x, G.cfg.dataset, out, suffix, None, force=False)
        assert out.stat().st_size > 0
    assert np.load(tmp_path / "s.npy").shape == (10, 2)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "x,y"
    assert torch.equal(torch.load(tmp_path / "s.pt"), x)
