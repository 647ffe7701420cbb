"""NegLabel's grouping (Jiang et al., ICLR 2024): negatives are split by a seeded permutation
into G groups; Eq. 1 is computed with each group as the negatives and the G scores are
averaged. The average is taken in log space: log((1/G) Σ_g S_g). When G does not divide the
M negatives, ``remainder: spread`` keeps all of them in groups of ⌊M/G⌋ and ⌈M/G⌉;
``remainder: drop`` leaves the last M mod G negatives (in the label set's order) out and
permutes the rest into G groups of ⌊M/G⌋, as NegLabel's official code does."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp

from clustermine.detectors.base import DetectorConfigError
from clustermine.detectors.eq1 import Eq1Detector, log_positive_share
from clustermine.detectors.streaming import segment_reduce


class Eq1GroupedDetector(Eq1Detector):
    name = "eq1_grouped"

    def _fit(self, train, labels) -> None:
        n_neg, groups = len(self.text_neg.names), int(self.params["groups"])
        if not 1 <= groups <= n_neg:
            raise DetectorConfigError(
                f"{self.name}: groups must be between 1 and the {n_neg} negatives, got {groups}"
            )
        rng = np.random.default_rng(int(self.params["seed"]))
        if self.params["remainder"] == "drop":
            q = n_neg // groups
            perm, sizes = rng.permutation(groups * q), np.full(groups, q)
        else:
            perm = rng.permutation(n_neg)
            sizes = np.array([len(g) for g in np.array_split(perm, groups)])
        self.state = {"permutation": perm.astype(np.int64), "group_sizes": sizes.astype(np.int64)}

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        if "permutation" not in self.state:
            raise DetectorConfigError(f"{self.name}: detector used before fit")
        neg = self.texts_on_device("neg")
        perm = torch.as_tensor(self.state["permutation"], device=neg.device)
        bounds = np.r_[0, np.cumsum(self.state["group_sizes"])].tolist()
        groups = [(neg, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        segments = [self.texts_on_device("pos"), *groups]
        lse = segment_reduce(image_emb, segments, 1.0 / self.tau, self.budget_bytes)["lse"]
        log_s = log_positive_share(lse[:, :1], lse[:, 1:])
        return logsumexp(log_s, axis=1) - np.log(log_s.shape[1])
