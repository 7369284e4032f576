"""trainer.eval_every: scores G during training on samples from fixed latents, so scores compare over time."""

from __future__ import annotations

import torch
from torch import nn

from ganctl import features, images, metrics
from ganctl.config import RunConfig
from ganctl.generation import class_labels, generate, seeded

EVAL_SEED = 12345  # the evaluation latents, the same in every run
EVAL_BATCH = 500


class Evaluator:
    """FD and classifier score for images, W1 and the KS statistic for the 1-D Gaussian."""

    def __init__(self, cfg: RunConfig, is_image: bool, device: torch.device, n_classes: int = 0):
        self.cfg, self.is_image, self.device = cfg, is_image, device
        self.metric = ("fd" if is_image else "w1") if cfg.trainer.eval_metric == "auto" else cfg.trainer.eval_metric
        self.fields = ["fd", "classifier_score"] if is_image else ["w1", "ks_statistic"]
        self.z = seeded(cfg.trainer.eval_samples, cfg.model, EVAL_SEED)
        # A conditional G is asked for every class equally, and scored on whether it drew them.
        self.labels = class_labels(len(self.z), n_classes) if n_classes else None
        if self.labels is not None and is_image:
            self.fields.append("class_accuracy")
        self.features = None

    def __call__(self, G: nn.Module) -> dict:
        x = generate(G, self.z, EVAL_BATCH, labels=self.labels)
        if not self.is_image:
            d = self.cfg.dataset
            stats = metrics.gaussian1d_stats(x.numpy(), d.mean, d.std)
            return {"w1": stats["wasserstein1"], "ks_statistic": stats["ks_statistic"]}
        if self.features is None:  # trained on first use and cached under the data folder
            self.features = features.load_or_fit(self.cfg.dataset, self.device, progress=False)
        pixels = images.to_uint8(x, self.cfg.dataset.range)
        scores = features.image_metrics(
            pixels, self.features, self.device, EVAL_BATCH, pr_samples=1000, seed=0, labels=self.labels
        )
        return {k: scores[k] for k in self.fields}
