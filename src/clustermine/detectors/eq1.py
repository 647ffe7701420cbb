"""Eq. 1 of ClusterMine (the NegLabel score without grouping), in log space.

S(x) = Σ_pos e^{s/τ} / (Σ_pos e^{s/τ} + Σ_neg e^{s/τ}). At τ = 0.001 the exponentials overflow
float32 and S itself rounds to exactly 1 for most ID images, so the score returned is
log S = -log(1 + e^{lse_neg − lse_pos}) in float64: the same order, no overflow and no ties.
τ = tau_factor / logit_scale unless ``tau`` is given.
"""

from __future__ import annotations

import numpy as np

from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.streaming import segment_reduce


class Eq1Detector(Detector):
    name = "eq1"

    @property
    def tau(self) -> float:
        tau = self.params["tau"]
        if tau is None or tau == "none":
            tau = float(self.params["tau_factor"]) / self.logit_scale
        tau = float(tau)
        if not np.isfinite(tau) or tau <= 0:
            raise DetectorConfigError(f"{self.name}: tau must be positive, got {tau}")
        return tau

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        lse = segment_reduce(
            image_emb,
            [self.texts_on_device("pos"), self.texts_on_device("neg")],
            1.0 / self.tau,
            self.budget_bytes,
        )["lse"]
        return log_positive_share(lse[:, 0], lse[:, 1])


def log_positive_share(lse_pos: np.ndarray, lse_neg: np.ndarray) -> np.ndarray:
    """log(P / (P + N)) from log P and log N, exact where either dominates."""
    return -np.logaddexp(0.0, np.asarray(lse_neg, np.float64) - np.asarray(lse_pos, np.float64))
