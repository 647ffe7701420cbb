"""Y_GT ∪ Y_aug (ClusterMine paper, Tab. 4): Y_GT plus the corpus names most similar to it."""

from __future__ import annotations

import numpy as np

from clustermine.labelsets import LabelSet
from clustermine.mining.gt import gt_stats
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import select_negatives
from clustermine.zeroshot import zero_shot_topk


def mine_gt_aug(
    inputs: MiningInputs,
    *,
    num_aug: int,
    negatives: str,
    num_negatives: int,
    quantile: float,
    missing_gt: str,
) -> LabelSet:
    """A candidate's similarity to Y_GT is its highest cosine to any Y_GT name (its score)."""
    if num_aug < 0:
        raise MinerConfigError(f"gt_aug: num_aug must be non-negative, got {num_aug}")
    gt = inputs.ground_truth(missing_gt)
    cand = np.setdiff1d(np.arange(len(inputs.corpus_names)), gt.corpus_rows)
    nearest = zero_shot_topk(
        inputs.corpus_emb[cand], gt.embeddings, 1, inputs.budget_bytes, inputs.device
    )
    sim = nearest.sims[:, 0].astype(np.float64)
    take = np.lexsort((cand, -sim))[:num_aug]
    aug, aug_sim = cand[take], sim[take]
    gt_pos = gt.positives()
    corpus_pos = np.concatenate([gt_pos["positives"], aug])
    pos_scores = np.concatenate([np.full(len(gt_pos["positives"]), np.nan), aug_sim])
    anchors = np.concatenate([gt.embeddings, inputs.corpus_emb[aug]])
    neg, neg_scores = select_negatives(
        inputs, np.union1d(gt.corpus_rows, aug), anchors, negatives, num_negatives, quantile
    )
    return LabelSet(
        "gt_aug",
        inputs.corpus_names,
        corpus_pos,
        neg,
        pos_scores=pos_scores,
        neg_scores=neg_scores,
        class_names=inputs.class_names,
        class_positives=gt_pos["class_positives"],
        stats={
            **gt_stats(inputs, gt),
            "n_aug": int(len(aug)),
            "min_aug_sim": float(aug_sim.min()) if len(aug) else None,
        },
    )
