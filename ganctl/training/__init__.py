"""The training core: the GAN step, the training state, the run log, checkpoint files and their set-up.

Imports the parts (data, models, losses, optim, metrics, images) and the base (config, errors,
devices), never the commands above it. See docs/ARCHITECTURE.md.
"""
