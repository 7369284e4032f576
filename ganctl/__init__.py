"""ganctl: train generative adversarial networks from Hydra YAML configs."""

__version__ = "0.1.0"
