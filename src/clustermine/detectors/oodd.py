"""OODD (Yang, Zhu, Sun, Liu, Gu, Ye, *OODD: Test-time Out-of-Distribution Detection with
Dynamic Dictionary*, CVPR 2025; official code zxk1212/OODD): a priority queue of the most
OOD-looking test features, filled while a stream of test images is scored.

Every image x has an ID score s_ID(x). The queue (the "dictionary") keeps the Q features of
lowest s_ID seen so far, and

    S(x) = s_ID(x) − (the K2-th largest cosine of x̂ to the queued features).

Per batch of ``stream_batch_size`` images, in stream order: every image of the batch enters
the queue (no threshold; beyond Q features the one of highest s_ID leaves), then the batch is
scored against the queue, its own images included (a queued image finds itself at cosine 1).
Equal priorities: the earlier-seen feature stays. While the queue holds fewer than K2
features its smallest cosine is taken (counted in ``score_stats["k2_clamped"]``).

- ``oodd`` (the official OpenOOD postprocessor, ``openood/postprocessors/knn_postprocessor.py``):
  s_ID = the K1-th largest cosine of x̂ to the ID-train features kept by informative inlier
  sampling: each ID-train image's zero-shot class over the positives and its confidence (the
  max softmax of logit_scale · cosine); per class the images by confidence, highest first; the
  classes interleaved rank by rank; the first ⌊α·N⌋ kept.
- ``oodd_mcm`` (the official CLIP code, ``MCM/eval_ood_detection.py``): s_ID = MCM, the max
  softmax over the positives of cosine / T.

Cosines are float32 (as in the official code), the score float64. The kept ID-train features
(unit rows) are part of the detector's state, shared, never copied, by every reset.
"""

from __future__ import annotations

import numpy as np
import torch

from clustermine.compute import as_unit_tensor, rows_within
from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.mcm import MCMDetector
from clustermine.knn import kth_largest_cosine

CPU = torch.device("cpu")
# The queue's state; the rest of the state (OODD's ID-train features) never changes.
QUEUE_KEYS = ("queue", "priority", "arrival", "seen")


def zero_shot_confidence(
    images: np.ndarray, positives: torch.Tensor, logit_scale: float, budget_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot class (argmax over the unit rows ``positives``, ties to the first) and the
    log of its softmax probability at ``logit_scale``, in float64 as −log1p(Σ_{j≠ŷ}
    e^{l_j − l_ŷ}): a confident image's probability is 1.0 in float32 (and often in
    float64), and so is max − logsumexp; this still orders such images."""
    rows = rows_within(budget_bytes, 8 * 3 * len(positives), len(images))
    cls = np.empty(len(images), dtype=np.int64)
    log_p = np.empty(len(images), dtype=np.float64)
    for r0 in range(0, len(images), rows):
        x = as_unit_tensor(images[r0 : r0 + rows], positives.device)
        logits = (x @ positives.T).double() * logit_scale
        top = logits.argmax(dim=1, keepdim=True)
        rest = torch.exp(logits - logits.gather(1, top)).scatter_(1, top, 0.0).sum(dim=1)
        cls[r0 : r0 + len(x)] = top[:, 0].cpu().numpy()
        log_p[r0 : r0 + len(x)] = (-torch.log1p(rest)).cpu().numpy()
    return cls, log_p


def informative_inliers(
    train: np.ndarray, positives: torch.Tensor, logit_scale: float, fraction: float,
    budget_bytes: int,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """The rows of ``train`` kept by OODD's informative inlier sampling, in row order, and the
    number of zero-shot classes: per zero-shot class the images by confidence, highest first
    (ties: row order); the classes interleaved rank by rank (every class's best, then every
    class's second best, ...; classes in index order); the first ⌊fraction · N⌋, at least
    one."""
    n = len(train)
    cls, log_p = zero_shot_confidence(train, positives, logit_scale, budget_bytes)
    order = np.lexsort((np.arange(n), -log_p, cls))  # by class, confidence down, row
    sorted_cls = cls[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_cls)) + 1]
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    interleaved = order[np.lexsort((sorted_cls, rank))]
    return np.sort(interleaved[: max(1, int(fraction * n))]), len(starts)


class _OODDStream(Detector):
    """The dictionary and the stream loop of both variants; a subclass gives s_ID."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        k2, q = int(self.params["k2"]), int(self.params["queue_size"])
        if k2 > q:
            raise DetectorConfigError(
                f"{self.name}: k2 = {k2} is more than queue_size = {q}: the K2-th largest "
                "cosine to the queue would never exist; lower k2 or raise queue_size"
            )

    def _id_scores(self, x: np.ndarray) -> np.ndarray:
        """s_ID of unit rows ``x``, float64."""
        raise NotImplementedError

    def _empty_queue(self, dim: int) -> dict[str, np.ndarray]:
        q = int(self.params["queue_size"])
        return {
            "queue": np.zeros((q, dim), dtype=np.float32),  # unit test features
            "priority": np.full(q, np.inf),  # their s_ID
            "arrival": np.zeros(q, dtype=np.int64),  # their position in the stream
            "seen": np.zeros(1, dtype=np.int64),  # images scored since the reset
        }

    def reset_state(self, fitted: dict) -> None:
        self.state = {k: np.array(v, copy=True) if k in QUEUE_KEYS else v
                      for k, v in fitted.items()}  # fmt: skip

    @property
    def _fill(self) -> int:
        return int(min(self.state["seen"][0], len(self.state["priority"])))

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        x = as_unit_tensor(image_emb, CPU).numpy()
        s_id = self._id_scores(x)
        batch = int(self.params["stream_batch_size"])
        out = np.empty(len(x))
        self.score_stats = {"k2_clamped": 0}
        for b0 in range(0, len(x), batch):
            xb, sb = x[b0 : b0 + batch], s_id[b0 : b0 + batch]
            self._enqueue(xb, sb)
            out[b0 : b0 + len(xb)] = sb - self._queue_similarity(xb)
        return out

    def _enqueue(self, x: np.ndarray, priority: np.ndarray) -> None:
        """Put a batch into the queue: the Q features of lowest priority stay, the earlier
        seen of equal ones."""
        st, fill = self.state, self._fill
        seen = int(st["seen"][0])
        prio = np.r_[st["priority"][:fill], priority]
        arrival = np.r_[st["arrival"][:fill], seen + np.arange(len(x))]
        keep = np.lexsort((arrival, prio))[: len(st["priority"])]
        n = len(keep)
        st["queue"][:n] = np.concatenate([st["queue"][:fill], x])[keep]
        st["priority"][:n], st["arrival"][:n] = prio[keep], arrival[keep]
        st["seen"][0] = seen + len(x)

    def _queue_similarity(self, x: np.ndarray) -> np.ndarray:
        """The K2-th largest cosine of each row of ``x`` to the queue (its smallest while the
        queue holds fewer than K2)."""
        fill = self._fill
        k2 = int(self.params["k2"])
        if fill < k2:
            self.score_stats["k2_clamped"] += len(x)
        queued = torch.as_tensor(self.state["queue"][:fill]).to(self.device)
        return kth_largest_cosine(x, queued, min(k2, fill), self.budget_bytes)


class OODDDetector(_OODDStream):
    """s_ID = the K1-th largest cosine to the ID-train features kept by informative inlier
    sampling (the official OpenOOD postprocessor)."""

    name = "oodd"

    def _fit(self, train: np.ndarray | None, labels: np.ndarray | None) -> None:
        if train is None or not len(train):
            raise DetectorConfigError(f"{self.name}: needs ID-train image embeddings")
        rows, n_classes = informative_inliers(
            train, self.texts_on_device("pos"), self.logit_scale,
            float(self.params["inlier_fraction"]), self.budget_bytes,
        )  # fmt: skip
        keys = as_unit_tensor(np.asarray(train[rows], np.float32), CPU, inplace=True).numpy()
        k1 = int(self.params["k1"])
        if k1 > len(keys):
            self.warn(
                f"k1 = {k1} is more than the {len(keys)} ID-train features kept: s_ID is "
                f"their smallest cosine (the {len(keys)}-th largest)"
            )
        self.state = {"keys": keys, **self._empty_queue(train.shape[1])}
        self.fit_stats.update(
            {"n_train": int(len(train)), "n_kept": int(len(keys)), "n_classes": n_classes}
        )

    def _device_keys(self) -> torch.Tensor:
        """The kept ID-train features on the compute device (moved once)."""
        keys, cached = self.state["keys"], getattr(self, "_keys_cache", None)
        if cached is None or cached[0] is not keys or cached[1] != self.device:
            self._keys_cache = cached = (keys, self.device, torch.as_tensor(keys).to(self.device))
        return cached[2]

    def _id_scores(self, x: np.ndarray) -> np.ndarray:
        keys = self._device_keys()
        return kth_largest_cosine(x, keys, min(int(self.params["k1"]), len(keys)),
                                  self.budget_bytes)  # fmt: skip


class OODDMCMDetector(_OODDStream, MCMDetector):
    """s_ID = MCM over the positives (the official CLIP variant, MCM+OODD)."""

    name = "oodd_mcm"

    def _fit(self, train: np.ndarray | None, labels: np.ndarray | None) -> None:
        MCMDetector._fit(self, train, labels)
        self.state = self._empty_queue(self.embedding_dim)

    def _id_scores(self, x: np.ndarray) -> np.ndarray:
        return MCMDetector._score(self, x)
