"""Work done beside training draws from its own random streams, so a run's stream is its seed's alone."""

import torch

from ganctl import features
from ganctl.config import DatasetConfig


def test_feature_net_fit_leaves_the_global_stream_alone(svhn_root, tmp_path, monkeypatch):
    """trainer.eval_every fits the feature net mid-run: it used to reseed the global stream, so
    every seed of a sweep continued on one shared stream after the first evaluation."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the fit caches its net; keep it out of ~
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    model = features.fit(
        DatasetConfig(name="svhn", root=str(svhn_root), split="train"),
        torch.device("cpu"),
        epochs=1,
        seed=0,
        progress=False,
    )
    assert torch.equal(torch.rand(5), expected)
    # The fit itself is still its seed's: the same seed trains the same net.
    again = features.fit(
        DatasetConfig(name="svhn", root=str(svhn_root), split="train"),
        torch.device("cpu"),
        epochs=1,
        seed=0,
        progress=False,
    )
    for a, b in zip(model.net.parameters(), again.net.parameters()):
        assert torch.equal(a, b)
