"""Calibration of a detector: the sorted scores of a held-out ID set (docs/deploy.md).

From them come the threshold that accepts a chosen share of ID images (95% by default: the
convention of MCM's and NegLabel's FPR95, :func:`clustermine.metrics.fpr_at_tpr`) and a p-value
for any new score: the share of held-out ID scores at or below it. Small p-values mean "less
in-distribution than almost every held-out ID image".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_ACCEPTANCE = 0.95


class CalibrationError(ValueError):
    """Calibration scores that cannot give a threshold, or an acceptance share out of range."""


@dataclass
class Calibration:
    """``scores``: the held-out ID set's scores, sorted ascending (float64)."""

    scores: np.ndarray
    dataset: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64).ravel()
        if not len(scores):
            raise CalibrationError(f"calibration set {self.dataset!r} holds no scores")
        bad = int((~np.isfinite(scores)).sum())
        if bad:
            raise CalibrationError(
                f"calibration set {self.dataset!r}: {bad} of {len(scores)} scores are NaN or inf"
            )
        self.scores = np.sort(scores)

    def __len__(self) -> int:
        return len(self.scores)

    def threshold(self, acceptance: float = DEFAULT_ACCEPTANCE) -> float:
        """The highest threshold t with at least ``acceptance`` of the held-out ID scores ≥ t;
        a new image is in-distribution when its score is ≥ t."""
        acceptance = check_acceptance(acceptance)
        needed = max(1, math.ceil(acceptance * len(self.scores) - 1e-9))
        return float(self.scores[len(self.scores) - needed])

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        """The share of held-out ID scores at or below each score (NaN stays NaN)."""
        scores = np.asarray(scores, dtype=np.float64)
        out = np.searchsorted(self.scores, scores, side="right") / len(self.scores)
        return np.where(np.isnan(scores), np.nan, out)

    def summary(self, acceptance: float = DEFAULT_ACCEPTANCE) -> dict[str, Any]:
        """What ``/info``, ``describe()`` and a bundle's manifest say about the calibration."""
        q = np.quantile(self.scores, [0.0, 0.05, 0.5, 0.95, 1.0])
        return {
            "dataset": self.dataset,
            "num_samples": len(self.scores),
            "id_acceptance": acceptance,
            "threshold": self.threshold(acceptance),
            "quantiles": dict(zip(("min", "q05", "median", "q95", "max"), map(float, q))),
        }


def check_acceptance(acceptance: float) -> float:
    acceptance = float(acceptance)
    if not 0.0 < acceptance <= 1.0:
        raise CalibrationError(
            f"ID acceptance must be a share in (0, 1] (e.g. 0.95), got {acceptance}"
        )
    return acceptance
