"""Debiased negative mining (Peng, Lu, Zhang, Fang, KDD 2026): negatives chosen from the corpus
without any ID label, by the density of their raw text features; the positives are Y_GT, or
the positives of another label set (``positives_of``: ClusterMine's mined names, a label-free
combination). The matching score is :mod:`clustermine.detectors.debiased`.

Density. For corpus names i, j with raw text features of norms ν and directions t̂, the
pseudo-distance is d_ij = ν_i + ν_j − 2⟨t̂_i, t̂_j⟩ (unsquared norms, as the official code has
it) and the density r_i is the mean of log d_ij over the k1 + 1 smallest d_ij, i itself
included. Names are ranked by r ascending and the lowest ``noun_fraction`` of the nouns and
``adjective_fraction`` of the adjectives are kept. The k1 + 1 smallest distances are a top-k
of ⟨t̂_i, t̂_j⟩ − ν_j/2, found by the blocked kNN (clustermine.knn.blocked_topk) within the
memory budget: the N × N matrix is never built.
"""

from __future__ import annotations

import logging

import numpy as np

from clustermine.knn import blocked_topk
from clustermine.labelsets import LabelSet
from clustermine.mining.gt import gt_stats
from clustermine.mining.inputs import MinerConfigError, MiningInputs

log = logging.getLogger(__name__)

# Parts of speech counted as adjectives; everything else (nouns, ID class names added to the
# corpus, word lists without tags) is ranked with the nouns.
ADJECTIVE_TAGS = ("a", "s")
# Distances at or below zero (raw norms below 1) have no logarithm; they are clamped here.
MIN_DISTANCE = 1e-12


def density(
    directions: np.ndarray,
    norms: np.ndarray,
    k1: int,
    *,
    device=None,
    budget_bytes: int | None = None,
) -> tuple[np.ndarray, int]:
    """r_i (float64 [N]) and how many of the distances used were clamped at MIN_DISTANCE."""
    n = len(directions)
    k = min(int(k1) + 1, n)
    norms = np.asarray(norms, dtype=np.float64)
    top = blocked_topk(
        directions,
        k,
        key_bias=norms / 2,
        exclude_self=False,
        device=device,
        budget_bytes=budget_bytes,
    )
    # top.sims[i, m] = cos_ij − ν_j/2, so d_ij = ν_i − 2 · sims.
    dist = norms[:, None] - 2.0 * top.sims.astype(np.float64)
    clamped = int((dist <= MIN_DISTANCE).sum())
    return np.log(np.maximum(dist, MIN_DISTANCE)).mean(axis=1), clamped


def write_density(path, r: np.ndarray, clamped: int, attrs: dict) -> None:
    """The density file ``results/{model}/text/density/{corpus}.{prompts}.k{k1}.h5``."""
    import h5py

    from clustermine.h5io import atomic_path, write_attrs

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("density", data=np.asarray(r, np.float64))
        write_attrs(f, {**attrs, "kind": "text_density", "clamped_distances": int(clamped),
                        "num_names": int(len(r))})  # fmt: skip


def read_density(path) -> tuple[np.ndarray, dict]:
    import h5py

    from clustermine.h5io import EmbeddingFileError, read_attrs

    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "text_density" or "density" not in f:
            raise EmbeddingFileError(f"{path}: not a text-density file; delete it and rerun")
        return f["density"][()].astype(np.float64), read_attrs(f)


def _positives(inputs: MiningInputs, missing_gt: str) -> tuple[dict, dict]:
    """LabelSet keyword arguments making the positives, and statistics about them."""
    other = inputs.positive_set
    if other is not None:
        return (
            {
                "positives": other.positives,
                "class_positives": other.class_positives,
                "class_names": other.class_names,
            },
            {"positives_from": other.miner, "n_pos_from_label_set": other.n_pos},
        )
    gt = inputs.ground_truth(missing_gt)
    return {**gt.positives(), "class_names": inputs.class_names}, gt_stats(inputs, gt)


def mine_debiased(
    inputs: MiningInputs,
    *,
    k1: int,
    noun_fraction: float,
    adjective_fraction: float,
    missing_gt: str,
) -> LabelSet:
    """Negative score = the density r (lower = kept first)."""
    if k1 < 1:
        raise MinerConfigError(f"debiased: k1 must be at least 1, got {k1}")
    positives, stats = _positives(inputs, missing_gt)
    n = len(inputs.corpus_names)
    if inputs.corpus_density is not None:  # cached by the workflow (rule text_density)
        r, clamped = np.asarray(inputs.corpus_density, np.float64), 0
        if len(r) != n:
            raise MinerConfigError(f"debiased: {len(r)} densities for {n} corpus names")
    else:
        r, clamped = density(
            inputs.corpus_emb,
            inputs.text_norms(),
            k1,
            device=inputs.device,
            budget_bytes=inputs.budget_bytes,
        )
    if clamped:
        log.warning(
            "debiased: %d pseudo-distances were <= 0 and clamped at %g (raw text norms below 1)",
            clamped,
            MIN_DISTANCE,
        )
    tags = inputs.corpus_pos or ["n"] * n
    is_adj = np.array([t in ADJECTIVE_TAGS for t in tags])
    excluded = np.zeros(n, dtype=bool)
    excluded[positives["positives"]] = True  # a corpus row cannot be positive and negative
    kept = []
    for part, fraction in ((~is_adj, noun_fraction), (is_adj, adjective_fraction)):
        rows = np.flatnonzero(part)
        count = int(len(rows) * fraction)  # as the official code rounds
        ranked = rows[np.argsort(r[rows], kind="stable")]
        kept.append(ranked[~excluded[ranked]][:count])
    neg = np.concatenate(kept).astype(np.int64)
    log.info(
        "debiased: %d negatives (%d nouns, %d adjectives) of %d names, k1=%d",
        len(neg),
        len(kept[0]),
        len(kept[1]),
        n,
        k1,
    )
    return LabelSet(
        "debiased",
        inputs.corpus_names,
        negatives=neg,
        neg_scores=r[neg],
        params={
            "k1": k1,
            "noun_fraction": noun_fraction,
            "adjective_fraction": adjective_fraction,
            "missing_gt": missing_gt,
        },
        stats={
            **stats,
            "n_nouns": int((~is_adj).sum()),
            "n_adjectives": int(is_adj.sum()),
            "n_neg_nouns": int(len(kept[0])),
            "n_neg_adjectives": int(len(kept[1])),
            "clamped_distances": clamped,
        },
        **positives,
    )
