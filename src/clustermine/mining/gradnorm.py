"""GradNorm positive-noun filtering (Peng et al., "On the Provable Importance of Gradients for
Language-Assisted Image Clustering", ICCV 2025): label-free positives picked from the corpus by
the image clusters, like ClusterMine.

Cluster prototypes w_k are the L2-normalised means of each cluster's ID-train image
embeddings. Every corpus name n (normalised text t_n) gets p_n = softmax_k(⟨w_k, t_n⟩ / T)
over the clusters, its cluster ŷ_n = argmax p_n, and the gradient norm of the cross-entropy
of the prototype classifier at its own prediction, G(n) = ‖p_n − onehot(ŷ_n)‖₂ · ‖t_n‖₂
(‖t_n‖₂ = 1 here, as the text embeddings are normalised). Each cluster keeps the ``top_k``
names of smallest G among the names assigned to it; Y_pos is their union. Names are processed
in blocks within the memory budget (270k names × 2000 clusters never build one matrix).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from clustermine.compute import pick_device, rows_within
from clustermine.h5io import normalize
from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import select_negatives

log = logging.getLogger(__name__)


def cluster_prototypes(images: np.ndarray, assignments: np.ndarray, num_clusters: int):
    """Normalised mean image embedding of every non-empty cluster [K', D] and the cluster ids
    they belong to [K'] (images are L2-normalised first; empty clusters have no prototype)."""
    x = normalize(images).astype(np.float64)
    a = np.asarray(assignments, dtype=np.int64)
    keep = a >= 0
    sums = np.zeros((num_clusters, x.shape[1]))
    np.add.at(sums, a[keep], x[keep])
    ids = np.flatnonzero(np.bincount(a[keep], minlength=num_clusters))
    return normalize(sums[ids]).astype(np.float32), ids


def gradient_norms(
    texts: np.ndarray,
    prototypes: np.ndarray,
    temperature: float,
    budget_bytes: int,
    device=None,
) -> tuple[np.ndarray, np.ndarray]:
    """ŷ (index into ``prototypes``) and G of every text row (normalised here), float64, in
    blocks.

    ‖p − e_ŷ‖² = Σ_k p_k² − 2 p_ŷ + 1, with Σ_k p_k² = exp(lse(2z) − 2 lse(z)) and
    p_ŷ = exp(max z − lse(z)) computed in log space (z = logits / T).
    """
    dev = pick_device(device)
    w = torch.as_tensor(prototypes, dtype=torch.float32, device=dev)
    rows = rows_within(budget_bytes, 8 * 4 * max(1, len(w)), len(texts))
    pred = np.empty(len(texts), dtype=np.int64)
    grad = np.empty(len(texts), dtype=np.float64)
    for r0 in range(0, len(texts), rows):
        t = torch.as_tensor(np.asarray(texts[r0 : r0 + rows], np.float32), device=dev)
        t = torch.nn.functional.normalize(t, dim=1)
        z = (t @ w.T).double() / temperature
        lse = torch.logsumexp(z, dim=1)
        top, arg = z.max(dim=1)
        sum_sq = torch.exp(torch.logsumexp(2 * z, dim=1) - 2 * lse)
        p_top = torch.exp(top - lse)
        sq = (sum_sq - 2 * p_top + 1).clamp_min(0)
        pred[r0 : r0 + len(t)] = arg.cpu().numpy()
        grad[r0 : r0 + len(t)] = sq.sqrt().cpu().numpy()
    return pred, grad  # × ‖t_n‖₂ = 1: the text rows are normalised, as in the official code


def select_per_cluster(pred: np.ndarray, grad: np.ndarray, top_k: int) -> np.ndarray:
    """Rows of the ``top_k`` smallest ``grad`` within each predicted cluster (ties: lower row),
    sorted."""
    order = np.lexsort((np.arange(len(grad)), grad, pred))  # by cluster, then G, then row
    sorted_pred = pred[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_pred)) + 1]
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    return np.sort(order[rank < top_k])


def mine_gradnorm(
    inputs: MiningInputs,
    *,
    temperature: float,
    top_k: int,
    negatives: str,
    num_negatives: int,
    quantile: float,
) -> LabelSet:
    """Votes = the cluster (prototype index) a positive is assigned to; score = its G."""
    if temperature <= 0 or top_k < 1:
        raise MinerConfigError(
            f"gradnorm: temperature must be positive and top_k at least 1, got {temperature}, "
            f"{top_k}"
        )
    assignments = inputs.cluster_assignments()
    images = inputs.image_embeddings()
    if len(images) != len(assignments):
        raise MinerConfigError(
            f"gradnorm: {len(assignments)} cluster assignments for {len(images)} ID-train images"
        )
    num_clusters = int(assignments.max()) + 1 if len(assignments) else 0
    prototypes, cluster_ids = cluster_prototypes(images, assignments, num_clusters)
    if not len(prototypes):
        raise MinerConfigError("gradnorm: no image has a cluster assignment")
    pred, grad = gradient_norms(
        inputs.corpus_emb, prototypes, temperature, inputs.budget_bytes, inputs.device
    )
    pos = select_per_cluster(pred, grad, top_k)
    neg, neg_scores = select_negatives(
        inputs, pos, inputs.corpus_emb[pos], negatives, num_negatives, quantile
    )
    chosen = len(np.unique(pred[pos]))
    log.info(
        "gradnorm: %d prototypes, %d of them own corpus names; %d positives (top %d each)",
        len(prototypes),
        chosen,
        len(pos),
        top_k,
    )
    return LabelSet(
        "gradnorm",
        inputs.corpus_names,
        pos,
        neg,
        pos_votes=cluster_ids[pred[pos]],
        pos_scores=grad[pos],
        neg_scores=neg_scores,
        stats={
            "n_images": int(len(images)),
            "n_prototypes": int(len(prototypes)),
            "n_prototypes_with_names": int(chosen),
            "mean_gradient_norm": float(grad[pos].mean()),
        },
    )
