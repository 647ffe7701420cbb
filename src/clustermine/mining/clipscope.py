"""CLIPScope's negative labels (Fu, Patel, Krishnamurthy, Khorrami, 2024; official code
fu1001hao/CLIPScope, ``mining.py``): every candidate name w (corpus \\ Y_GT) is ranked by v_w,
its ``rank``-th largest cosine to the Y_GT texts (the 50th in the paper); the OOD labels are
the ``num_low`` names of smallest v_w plus the ``num_high`` of largest (5,000 each).

The paper embeds candidates with the prompt "the {w}"; here they come with the ID set's
prompt set, like every other miner's candidates.
"""

from __future__ import annotations

import logging

import numpy as np

from clustermine.compute import as_unit_tensor, pick_device
from clustermine.knn import kth_largest_cosine
from clustermine.labelsets import LabelSet
from clustermine.mining.gt import gt_stats
from clustermine.mining.inputs import MinerConfigError, MiningInputs

log = logging.getLogger(__name__)


def kth_largest_similarity(
    candidates: np.ndarray, anchors: np.ndarray, k: int, budget_bytes: int, device=None
) -> np.ndarray:
    """For every candidate row, its ``k``-th largest cosine to the anchor rows (float64), in
    candidate blocks within the memory budget."""
    anchors = as_unit_tensor(anchors, pick_device(device))
    return kth_largest_cosine(candidates, anchors, k, budget_bytes)


def mine_clipscope(
    inputs: MiningInputs,
    *,
    rank: int,
    num_low: int,
    num_high: int,
    missing_gt: str,
) -> LabelSet:
    """Negative score = v_w; the low names come first in the file, then the high ones."""
    if rank < 1 or num_low < 0 or num_high < 0:
        raise MinerConfigError(
            f"clipscope: rank must be >= 1 and the counts >= 0, got {rank}, {num_low}, {num_high}"
        )
    gt = inputs.ground_truth(missing_gt)
    k = min(rank, len(gt.names))
    if k < rank:
        log.warning(
            "clipscope: rank %d is more than the %d ID classes; using the %d-th largest cosine",
            rank,
            len(gt.names),
            k,
        )
    cand = np.setdiff1d(np.arange(len(inputs.corpus_names)), gt.corpus_rows)
    v = kth_largest_similarity(
        inputs.corpus_emb[cand], gt.embeddings, k, inputs.budget_bytes, inputs.device
    )
    order = np.argsort(v, kind="stable")  # ascending; equal values keep corpus order
    low = order[: min(num_low, len(order))]
    high = order[max(len(low), len(order) - num_high) :]
    keep = np.concatenate([low, high])
    return LabelSet(
        "clipscope",
        inputs.corpus_names,
        negatives=cand[keep],
        neg_scores=v[keep],
        class_names=inputs.class_names,
        stats={
            **gt_stats(inputs, gt),
            "rank_used": k,
            "n_candidates": int(len(cand)),
            "n_low": int(len(low)),
            "n_high": int(len(high)),
        },
        **gt.positives(),
    )
