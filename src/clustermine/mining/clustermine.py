"""ClusterMine (Adaloglou et al., WACV 2026): each cluster of ID-train images votes for the
majority zero-shot label of its members; the voted names are the positives."""

from __future__ import annotations

import logging

import numpy as np

from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import select_negatives

log = logging.getLogger(__name__)


def cluster_majority(
    assignments: np.ndarray, top1: np.ndarray, num_names: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty cluster: its id, majority label, majority count and size.

    Ties between labels go to the lower corpus index; images assigned -1 are ignored.
    """
    keep = assignments >= 0
    a, t = assignments[keep], top1[keep]
    if not len(a):
        raise MinerConfigError("clustermine: no image has a cluster assignment")
    keys, counts = np.unique(a * np.int64(num_names) + t, return_counts=True)
    cluster, label = keys // num_names, keys % num_names
    order = np.lexsort((label, -counts, cluster))
    cluster, label, counts = cluster[order], label[order], counts[order]
    first = np.r_[True, cluster[1:] != cluster[:-1]]
    ids, sizes = np.unique(a, return_counts=True)
    # ``cluster[first]`` is sorted like ``ids``, so sizes line up.
    return cluster[first], label[first], counts[first], sizes


def mine_clustermine(
    inputs: MiningInputs,
    *,
    negatives: str = "complement",
    num_negatives: int = 10000,
    quantile: float = 0.95,
) -> LabelSet:
    """Votes = clusters that chose the name; score = mean majority share in those clusters."""
    top1 = inputs.zero_shot_top1()
    assign = inputs.cluster_assignments()
    m = len(inputs.corpus_names)
    _, label, maj, sizes = cluster_majority(assign, top1, m)
    pos, inverse = np.unique(label, return_inverse=True)
    votes = np.bincount(inverse, minlength=len(pos))
    purity_sum = np.bincount(inverse, weights=maj / sizes, minlength=len(pos))
    neg, neg_scores = select_negatives(
        inputs, pos, inputs.corpus_emb[pos], negatives, num_negatives, quantile
    )
    n_clusters = int(len(sizes))
    log.info("clustermine: %d non-empty clusters voted for %d names", n_clusters, len(pos))
    return LabelSet(
        "clustermine",
        inputs.corpus_names,
        pos,
        neg,
        pos_votes=votes,
        pos_scores=purity_sum / votes,
        neg_scores=neg_scores,
        params={"negatives": negatives, "num_negatives": num_negatives, "quantile": quantile},
        stats={
            "n_images": int(len(top1)),
            "n_clusters": n_clusters,
            "n_unassigned": int((assign < 0).sum()),
            "mean_majority_share": float(np.mean(maj / sizes)),
            "ypos_over_C": float(len(pos) / n_clusters),
            "redundancy": float(np.mean(votes > 1)),
        },
    )
