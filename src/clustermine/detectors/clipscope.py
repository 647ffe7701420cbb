"""CLIPScope (Fu, Patel, Krishnamurthy, Khorrami, 2024; official code fu1001hao/CLIPScope).

With logits l = logit_scale · cosine to the ID labels Y_GT (the positives) and the OOD labels
(the negatives, miner ``clipscope``): p(c|x) = softmax over Y_GT only, ŷ = argmax_c p(c|x),
P_ID(x) = Σ_{c∈Y_GT} softmax over Y_GT ∪ OOD labels, and

    S(x) = p(ŷ|x) · P_ID(x) / π(ŷ),

π the running histogram of the predicted ID classes of the images scored so far, initialised
to ones and incremented after each image is scored. ``clipscope`` adapts in that way over a
stream of test images (state: the histogram); ``clipscope_static`` keeps π uniform, so the
effect of the stream is visible. The returned score is log S (float64, log space).

The histogram is applied image by image in stream order whatever the batch size (the
state-independent parts are computed per batch), so any batch size reproduces the official
per-image loop exactly.
"""

from __future__ import annotations

import numpy as np

from clustermine.detectors.base import Detector
from clustermine.detectors.streaming import segment_reduce


def running_prior(counts: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """π(ŷ_i) for each image i of a stream, counting the predictions before it: the count of
    its class (initial counts plus earlier images of that class) over the total."""
    predicted = np.asarray(predicted, dtype=np.int64)
    order = np.argsort(predicted, kind="stable")
    first = np.r_[0, np.flatnonzero(np.diff(predicted[order])) + 1]
    earlier = np.empty(len(predicted), dtype=np.int64)
    earlier[order] = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    totals = counts.sum() + np.arange(len(predicted))
    return (counts[predicted] + earlier) / totals


class CLIPScopeDetector(Detector):
    name = "clipscope"
    adaptive = True

    def _fit(self, train, labels) -> None:
        self.state = {"counts": np.ones(len(self.text_pos.names), dtype=np.float64)}

    def _terms(self, image_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log p(ŷ|x) + log P_ID(x) and ŷ, per image."""
        out = segment_reduce(
            image_emb,
            [self.texts_on_device("pos"), self.texts_on_device("neg")],
            self.logit_scale,
            self.budget_bytes,
            ("lse", "max_scaled", "argmax"),
        )
        lse_pos, lse_neg = out["lse"][:, 0], out["lse"][:, 1]
        log_p_top = out["max_scaled"][:, 0] - lse_pos
        log_p_id = lse_pos - np.logaddexp(lse_pos, lse_neg)
        return log_p_top + log_p_id, out["argmax"][:, 0]

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        terms, predicted = self._terms(image_emb)
        if not self.adaptive:
            return terms + np.log(len(self.text_pos.names))  # π uniform: 1/C
        counts = self.state["counts"]
        prior = running_prior(counts, predicted)
        self.state["counts"] = counts + np.bincount(predicted, minlength=len(counts))
        return terms - np.log(prior)


class CLIPScopeStaticDetector(CLIPScopeDetector):
    name = "clipscope_static"
    adaptive = False

    def _fit(self, train, labels) -> None:
        """No state: π stays uniform."""
