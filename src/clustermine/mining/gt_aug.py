"""Y_GT ∪ Y_aug (ClusterMine paper, Tab. 4): Y_GT plus the corpus names most similar to it."""

from __future__ import annotations

import numpy as np

from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import select_negatives
from clustermine.zeroshot import zero_shot_topk


def mine_gt_aug(
    inputs: MiningInputs,
    *,
    num_aug: int = 500,
    negatives: str = "complement",
    num_negatives: int = 10000,
    quantile: float = 0.95,
    missing_gt: str = "error",
) -> LabelSet:
    """Similarity of a candidate to Y_GT = its highest cosine to any Y_GT name."""
    if num_aug < 0:
        raise MinerConfigError(f"gt_aug: num_aug must be non-negative, got {num_aug}")
    gt, missing = inputs.ground_truth(missing_gt)
    cand = np.setdiff1d(np.arange(len(inputs.corpus_names)), gt)
    nearest = zero_shot_topk(
        inputs.corpus_emb[cand], inputs.corpus_emb[gt], 1, inputs.budget_bytes, inputs.device
    )
    sim = nearest.sims[:, 0].astype(np.float64)
    take = np.lexsort((cand, -sim))[:num_aug]
    aug, aug_sim = cand[take], sim[take]
    pos = np.concatenate([gt, aug])
    neg, neg_scores = select_negatives(inputs, pos, negatives, num_negatives, quantile)
    pos_scores = np.concatenate([np.ones(len(gt)), aug_sim])
    return LabelSet(
        "gt_aug",
        inputs.corpus_names,
        pos,
        neg,
        pos_scores=pos_scores,
        neg_scores=neg_scores,
        params={
            "num_aug": num_aug,
            "negatives": negatives,
            "num_negatives": num_negatives,
            "quantile": quantile,
            "missing_gt": missing_gt,
        },
        stats={
            "n_gt": int(len(gt)),
            "n_aug": int(len(aug)),
            "missing_gt": missing,
            "min_aug_sim": float(aug_sim.min()) if len(aug) else None,
        },
    )
