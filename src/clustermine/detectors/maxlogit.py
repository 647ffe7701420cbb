"""MaxLogit (Hendrycks et al., ICML 2022) on CLIP: the largest cosine to a positive label."""

from __future__ import annotations

import numpy as np

from clustermine.detectors.base import Detector
from clustermine.detectors.streaming import segment_reduce


class MaxLogitDetector(Detector):
    name = "maxlogit"

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        out = segment_reduce(
            image_emb,
            [self.texts_on_device("pos")],
            1.0,
            self.budget_bytes,
            ("max",),
        )
        return out["max"][:, 0]
