"""ganctl: train generative adversarial networks from Hydra YAML configs.

The Python API (ganctl/api.py): `ganctl.compose(...)`, `ganctl.train(...)`, `ganctl.load(...)`.
It is imported on first use, so `ganctl --help` does not pay for Hydra and torch.
"""

from ganctl.version import __version__

__all__ = ["compose", "train", "load", "__version__"]


def __getattr__(name: str):
    if name in ("compose", "train", "load"):
        from ganctl import api

        return getattr(api, name)
    raise AttributeError(f"module 'ganctl' has no attribute {name!r}")
