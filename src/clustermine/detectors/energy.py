"""Energy score (Liu et al., NeurIPS 2020) on CLIP logits: T·logsumexp(logit_scale·s / T)."""

from __future__ import annotations

import numpy as np

from clustermine.detectors.base import Detector
from clustermine.detectors.streaming import segment_reduce


class EnergyDetector(Detector):
    name = "energy"

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        t = float(self.params["temperature"])
        out = segment_reduce(
            image_emb,
            [self.texts_on_device("pos")],
            self.logit_scale / t,
            self.budget_bytes,
        )
        return t * out["lse"][:, 0]
