"""Relative Mahalanobis distance (Ren et al., 2021): the class-conditional distance minus the
distance to one Gaussian fitted on all ID-train features. Score = −(min_c MD_c(x) − MD_0(x))."""

from __future__ import annotations

import numpy as np

from clustermine.detectors.mahalanobis import MahalanobisDetector, class_gaussians, min_mahalanobis


class RelativeMahalanobisDetector(MahalanobisDetector):
    name = "relative_mahalanobis"

    def _fit(self, train, labels) -> None:
        super()._fit(train, labels)
        if len(self.state["class_ids"]) == 1:
            self.warn(
                "one ID class: its Gaussian is the background Gaussian, so every relative "
                "distance is 0"
            )
        mean0, cov0 = class_gaussians(
            train, np.zeros(len(train), np.int64), 1, self.budget_bytes, self.device
        )
        self.state["background_mean"] = mean0
        self.state["background_precision"] = self._invert(cov0)

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        md0 = min_mahalanobis(
            image_emb,
            self.state["background_mean"],
            self.state["background_precision"],
            self.budget_bytes,
            self.device,
        )
        return -(self._min_distance(image_emb) - md0)
