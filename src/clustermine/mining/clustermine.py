"""ClusterMine (Adaloglou et al., WACV 2026): each cluster of ID-train images votes for the
majority zero-shot label of its members; the voted names are the positives."""

from __future__ import annotations

import logging

import numpy as np

from clustermine.cluster_analysis import majority_vote
from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import select_negatives

log = logging.getLogger(__name__)


def mine_clustermine(
    inputs: MiningInputs,
    *,
    negatives: str,
    num_negatives: int,
    quantile: float,
) -> LabelSet:
    """Votes = clusters whose majority label is the name (ties: lower corpus index);
    score = mean majority share of those clusters."""
    top1 = inputs.zero_shot_top1()
    assign = inputs.cluster_assignments()
    _, label, majority, sizes = majority_vote(assign, top1)
    if not len(label):
        raise MinerConfigError("clustermine: no image has a cluster assignment")
    pos, inverse = np.unique(label, return_inverse=True)
    votes = np.bincount(inverse, minlength=len(pos))
    share = majority / sizes
    share_sum = np.bincount(inverse, weights=share, minlength=len(pos))
    neg, neg_scores = select_negatives(
        inputs, pos, inputs.corpus_emb[pos], negatives, num_negatives, quantile
    )
    log.info("clustermine: %d non-empty clusters voted for %d names", len(sizes), len(pos))
    return LabelSet(
        "clustermine",
        inputs.corpus_names,
        pos,
        neg,
        pos_votes=votes,
        pos_scores=share_sum / votes,
        neg_scores=neg_scores,
        stats={
            "n_images": int(len(top1)),
            "n_nonempty_clusters": int(len(sizes)),
            "n_unassigned": int((assign < 0).sum()),
            "mean_majority_share": float(share.mean()),
        },
    )
