"""MCM, maximum concept matching (Ming et al., NeurIPS 2022): the largest softmax probability
over the positive labels of cosine / T, with T = 1 on raw cosines as in the official code."""

from __future__ import annotations

import numpy as np
import torch

from clustermine.detectors.base import Detector
from clustermine.detectors.streaming import segment_reduce


class MCMDetector(Detector):
    name = "mcm"

    def _fit(self, train, labels) -> None:
        if len(self.text_pos.names) == 1:
            self.warn(
                "a single positive label: the softmax over it is 1 for every image, so every "
                "score is the same"
            )

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        return max_softmax(
            image_emb, self.texts_on_device("pos"), self.params["temperature"], self.budget_bytes
        )


def max_softmax(
    image_emb: np.ndarray, texts: torch.Tensor, temperature: float, budget_bytes: int
) -> np.ndarray:
    """MCM of every row of ``image_emb``: the largest softmax probability of cosine / T over
    the unit text rows ``texts``, computed in log space."""
    out = segment_reduce(
        image_emb, [texts], 1.0 / float(temperature), budget_bytes, ("lse", "max_scaled")
    )
    return np.exp(out["max_scaled"][:, 0] - out["lse"][:, 0])
