"""trainer.eval_every: scores G during training on samples from fixed latents, so scores compare over time."""

from __future__ import annotations

import torch
from torch import nn

from ganctl import features, kinds
from ganctl.config import RunConfig
from ganctl.generation import class_labels, generate, seeded

EVAL_SEED = 12345  # the evaluation latents, the same in every run
EVAL_BATCH = 500
# KID's subsets in training: a tenth of `ganctl eval`'s 100, so a score costs well under a second
# on a CPU; its standard deviation over them is in the evaluation, not in metrics.csv.
KID_SUBSETS = 10


class Evaluator:
    """The scores the dataset's kind gives (kinds.py): for images FD and KID on the feature net that
    trainer.eval_features picks (and the classifier's score with the class-labelled net), W1 and
    the KS statistic for the 1-D Gaussian."""

    def __init__(self, cfg: RunConfig, device: torch.device, n_classes: int = 0):
        self.cfg, self.device = cfg, device
        self.kind = kinds.of(cfg.dataset)
        self.metric = self.kind.metric if cfg.trainer.eval_metric == "auto" else cfg.trainer.eval_metric
        self.fields = list(self.kind.fields)
        self.task = None
        if self.kind.pixels:
            self.task = features.choose(cfg.dataset, cfg.trainer.eval_features)
            self.fields = [f for f in self.fields if f != "classifier_score" or self.task == features.CLASSES]
        self.z = seeded(cfg.trainer.eval_samples, cfg.model, EVAL_SEED)
        # A conditional G is asked for every class equally, and scored on whether it drew them.
        self.labels = class_labels(len(self.z), n_classes) if n_classes else None
        if self.labels is not None and self.task == features.CLASSES:
            self.fields.append("class_accuracy")
        self.features = None

    def score_images(self, pixels: torch.Tensor) -> dict:
        if self.features is None:  # trained on first use and cached under the data folder
            self.features = features.load_or_fit(self.cfg.dataset, self.device, progress=False, task=self.task)
        scores = features.image_metrics(
            pixels, self.features, self.device, EVAL_BATCH, 1000, 0, self.labels, kid_subsets=KID_SUBSETS
        )
        return {k: scores[k] for k in self.fields}

    def __call__(self, G: nn.Module) -> dict:
        x = generate(G, self.z, EVAL_BATCH, labels=self.labels)
        return self.kind.in_training(x, self.cfg.dataset, self.score_images)
