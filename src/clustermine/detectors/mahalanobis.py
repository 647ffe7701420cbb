"""Mahalanobis distance (Lee et al., NeurIPS 2018) on CLIP image features.

Class means come from the L2-normalised ID-train features, labelled by zero-shot over the
positive labels (Y_GT) or, as an option, by their ground-truth labels. The shared covariance
is the mean of the per-class covariances (biased, 1/n_c; ``covariance: class_mean``) or, as in
the official code of Lee et al. and Ren et al., the covariance of all class-centred features
pooled (``covariance: pooled``); the two agree when every class has as many images. Everything
is float64 and the covariance is inverted with a pseudo-inverse by default.
Score = −min_c MD_c(x).
"""

from __future__ import annotations

import numpy as np
import torch

from clustermine.compute import rows_within
from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.zeroshot import zero_shot_top1

CLASS_SOURCES = ("zero_shot", "ground_truth")


class MahalanobisDetector(Detector):
    name = "mahalanobis"

    @property
    def needs_positives(self) -> bool:  # ground-truth class means need no label texts
        return self.params["class_source"] != "ground_truth"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.params["class_source"] not in CLASS_SOURCES:
            raise DetectorConfigError(
                f"{self.name}: class_source must be one of {CLASS_SOURCES}, got "
                f"{self.params['class_source']!r}"
            )
        if self.params["inverse"] not in ("pinv", "solve"):
            raise DetectorConfigError(
                f"{self.name}: inverse must be 'pinv' or 'solve', got {self.params['inverse']!r}"
            )

    def _class_labels(self, train: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if self.params["class_source"] == "ground_truth":
            if labels is None or len(labels) != len(train) or (labels < 0).any():
                raise DetectorConfigError(
                    f"{self.name}: class_source ground_truth needs a label >= 0 for every "
                    "ID-train image; this dataset has unknown labels (use zero_shot)"
                )
            return labels
        return zero_shot_top1(train, self.text_pos.embeddings, self.budget_bytes, self.device)

    def _fit(self, train: np.ndarray | None, labels: np.ndarray | None) -> None:
        if train is None or not len(train):
            raise DetectorConfigError(f"{self.name}: needs ID-train image embeddings")
        y = self._class_labels(train, labels)
        class_ids, y = np.unique(y, return_inverse=True)
        pooled = self.params["covariance"] == "pooled"
        means, cov = class_gaussians(
            train, y, len(class_ids), self.budget_bytes, self.device, pooled=pooled
        )
        self.state = {
            "class_ids": class_ids.astype(np.int64),
            "means": means,
            "precision": self._invert(cov),
        }
        self.fit_stats.update({"n_train": int(len(train)), "n_classes": int(len(class_ids))})

    def _invert(self, cov: np.ndarray) -> np.ndarray:
        if self.params["inverse"] == "pinv":
            return np.linalg.pinv(cov, hermitian=True)
        try:
            return np.linalg.solve(cov, np.eye(len(cov)))
        except np.linalg.LinAlgError as err:
            raise DetectorConfigError(
                f"{self.name}: the covariance is singular ({err}); use inverse: pinv"
            ) from err

    def _min_distance(self, image_emb: np.ndarray) -> np.ndarray:
        return min_mahalanobis(
            image_emb, self.state["means"], self.state["precision"], self.budget_bytes, self.device
        )

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        return -self._min_distance(image_emb)


def class_gaussians(
    x: np.ndarray, y: np.ndarray, n_classes: int, budget_bytes: int, device, pooled: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Class means [C, D] and the shared covariance [D, D] of the L2-normalised rows of ``x``,
    float64, in chunks: the mean of the per-class covariances, or (``pooled``) the covariance of
    all class-centred rows."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    n, d = x.shape
    rows = rows_within(budget_bytes, 8 * 3 * d, n)
    yt = torch.as_tensor(y, dtype=torch.int64)
    counts = torch.bincount(yt, minlength=n_classes).double().to(dev)
    sums = torch.zeros((n_classes, d), dtype=torch.float64, device=dev)
    for r0 in range(0, n, rows):
        xb = _unit64(x[r0 : r0 + rows], dev)
        sums.index_add_(0, yt[r0 : r0 + rows].to(dev), xb)
    means = sums / counts[:, None]
    # Weight 1/(n_c · C) per sample turns one scatter sum into the mean of class covariances;
    # 1/N pools them.
    if pooled:
        weight = torch.full_like(counts, (1.0 / n) ** 0.5)
    else:
        weight = (1.0 / (counts * n_classes)).sqrt()
    cov = torch.zeros((d, d), dtype=torch.float64, device=dev)
    for r0 in range(0, n, rows):
        yb = yt[r0 : r0 + rows].to(dev)
        zb = (_unit64(x[r0 : r0 + rows], dev) - means[yb]) * weight[yb, None]
        cov += zb.T @ zb
    return means.cpu().numpy(), cov.cpu().numpy()


def min_mahalanobis(
    x: np.ndarray, means: np.ndarray, precision: np.ndarray, budget_bytes: int, device
) -> np.ndarray:
    """min_c (x − μ_c)ᵀ P (x − μ_c) for every row of ``x`` (normalised here), float64."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    mu = torch.as_tensor(means, dtype=torch.float64, device=dev)
    p = torch.as_tensor(precision, dtype=torch.float64, device=dev)
    mu_p = mu @ p
    mu_term = (mu_p * mu).sum(dim=1)
    rows = rows_within(budget_bytes, 8 * 3 * max(len(means), x.shape[1]), len(x))
    out = np.empty(len(x))
    for r0 in range(0, len(x), rows):
        xb = _unit64(x[r0 : r0 + rows], dev)
        md = (xb @ p * xb).sum(dim=1, keepdim=True) - 2.0 * xb @ mu_p.T + mu_term[None, :]
        out[r0 : r0 + len(xb)] = md.min(dim=1).values.cpu().numpy()
    return out


def _unit64(x: np.ndarray, dev: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), device=dev).double()
    return torch.nn.functional.normalize(t, dim=1, eps=1e-12)
