"""The image recipe: `ganctl train dataset=IMAGES` with no experiment gets the modern recipe.

The root config's defaults train setup 002's 1-D Gaussian; choosing image data alone used to
leave its MLP, SGD and moments features in place and fail. Hydra cannot choose a group's default
from another group's choice (an interpolated default may not override other groups), so the
launch writes the recipe as ordinary overrides *in front of* the user's: Hydra lets a later
override of the same group or key win, so everything the user typed still decides. A group the
user chose keeps its own defaults: none of the recipe's keys for that group are added.
"""

from __future__ import annotations

from typing import Sequence

from ganctl.launch.overrides import LENGTH_KEYS, given_values, last_values, run_length

# The recipe of conf/experiment/mnist_best.yaml (its comments give the reasons), by group.
IMAGE_RECIPE: dict[str, tuple[str, list[str]]] = {
    "model": ("dcgan", ["model.z_dim=64", "model.width=32", "model.g_norm=batch", "model.d_spectral_norm=true"]),
    "loss": ("hinge", ["loss.r1_every=16"]),
    "optim": ("adam", ["optim.lr=2.0e-4", "optim.betas=[0.5,0.999]", "optim.schedule=linear", "optim.decay_start=0.5"]),
    "trainer": (
        "default",
        [
            "trainer.steps=10000",
            "trainer.epochs=null",
            "trainer.batch_size=64",
            "trainer.augment=[translation]",
            "trainer.ema_half_life=10000",
            "trainer.ema_warmup=0.05",
            "trainer.log_every=500",
            "trainer.sample_every=1000",
            "trainer.ckpt_every=5000",
        ],
    ),
}
BATCH = 64


def r1_gamma(resolution: int) -> float:
    """R1's weight for R x R images: 4x StyleGAN2-ADA's heuristic 2e-4 * R^2 / batch, as mnist_best
    uses at 28 px (0.01); the penalty's gradient norm grows with the number of pixels."""
    return round(4 * 2e-4 * resolution**2 / BATCH, 4)


def _resolution(dataset: str, given: dict[str, str]) -> int | None:
    from ganctl.config import DatasetConfig
    from ganctl.data import info

    shape = info(dataset).shape
    if shape is not None:
        return shape[-1]
    try:
        return int(given.get("dataset.resolution", DatasetConfig().resolution))
    except ValueError:  # not a number: the config check says so in its own line
        return None


def image_recipe(overrides: Sequence[str]) -> list[str]:
    """The overrides to put in front of `overrides`: the image recipe when they choose image data
    (`dataset=NAME` of a dataset whose kind is images) and no experiment; else none."""
    from ganctl.data import DATASETS, IMAGES

    given = last_values(overrides)
    dataset = given.get("dataset")
    if "experiment" in given or dataset not in DATASETS or DATASETS[dataset].kind != IMAGES:
        return []
    # A length the user gives replaces the recipe's: its trainer.steps would outrank trainer.epochs,
    # and in the run's recorded command it would stand beside trainer.minutes, which is refused.
    own_length = bool(given_values(overrides, LENGTH_KEYS))
    added = []
    for group, (option, keys) in IMAGE_RECIPE.items():
        if group not in given:
            added += [f"{group}={option}", *(k for k in keys if not (own_length and k.split("=")[0] in LENGTH_KEYS))]
    resolution = _resolution(dataset, given)
    if "loss" not in given and resolution is not None:
        added.append(f"loss.r1_gamma={r1_gamma(resolution)}")
    return added


def in_front(overrides: Sequence[str]) -> list[str]:
    """What goes in front of the user's overrides of `ganctl train` (or ganctl.compose): the image
    recipe, where it applies, and what the user's run length needs (run_length), which also refuses
    two lengths. In front, so that everything the user typed still wins."""
    return [*image_recipe(overrides), *run_length(overrides)]
