"""Scoring test-time-adaptive detectors on a stream (docs/methods.md, "Stateful scores").

A detector whose score adapts at test time (catalog need ``stream``: CLIPScope, AdaNeg,
OODD) is scored, for each pair of an ID test set and one OOD benchmark, on the two sets'
images concatenated and shuffled by a seeded permutation, with its state reset to the fitted
one for every pair, as the official evaluations do. The scores are written back in each
dataset's own row order, so metrics need no special case. The permutation seed and the
detector's stream batch size are recorded with the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StreamScores:
    """The scores of one (ID set, benchmark) pair, each in its dataset's row order, and the
    stream order they were computed in (indices into the concatenation ID then OOD)."""

    id_scores: np.ndarray
    ood_scores: np.ndarray
    order: np.ndarray
    seed: int


def stream_order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def score_stream(
    detector, id_emb: np.ndarray, ood_emb: np.ndarray, seed: int, attrs=None, source=None
) -> StreamScores:
    """Reset ``detector`` to its fitted state, score ``id_emb`` and ``ood_emb`` shuffled
    together (``seed``) in stream order, and return the scores in row order. ``attrs`` and
    ``source``: the embeddings' model attributes and where they come from, checked against
    the detector's model (:meth:`clustermine.detectors.Detector.score`)."""
    detector.reset()
    x = np.concatenate([np.asarray(id_emb), np.asarray(ood_emb)])
    order = stream_order(len(x), seed)
    scores = np.empty(len(x))
    scores[order] = detector.score(x[order], attrs, source)
    return StreamScores(scores[: len(id_emb)], scores[len(id_emb) :], order, int(seed))
