"""PosMine (ClusterMine paper's baseline): every corpus name that is the zero-shot top-1 of at
least M ID-train images becomes a positive.

``num_positives`` instead keeps a fixed number of names, the most voted (for comparisons at an
equal number of positives, paper Table 4); ``match_positives_of`` sets it to another label
set's |Y_pos|."""

from __future__ import annotations

import numpy as np

from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import select_negatives


def mine_posmine(
    inputs: MiningInputs,
    *,
    min_votes: int,
    num_positives: int | None,
    negatives: str,
    num_negatives: int,
    quantile: float,
) -> LabelSet:
    """Votes = images whose top-1 is the name; score = that share of all ID-train images.
    With a label set under ``match_positives_of`` (``inputs.label_sets``), as many positives
    as it has."""
    matched = inputs.label_sets.get("match_positives_of")
    if matched is not None:
        # Equal-|Y_pos| comparisons (paper Table 4).
        num_positives = matched.n_pos
    top1 = inputs.zero_shot_top1()
    if min_votes < 1:
        raise MinerConfigError(f"posmine: min_votes must be at least 1, got {min_votes}")
    counts = np.bincount(top1, minlength=len(inputs.corpus_names))
    if num_positives is not None:
        voted = int((counts > 0).sum())
        if not 1 <= num_positives <= voted:
            raise MinerConfigError(
                f"posmine: num_positives must be in 1..{voted} (the names that are the top-1 of "
                f"any ID-train image), got {num_positives}"
            )
        # Most votes first; equal votes in corpus order.
        pos = np.sort(np.argsort(-counts, kind="stable")[:num_positives])
    else:
        pos = np.flatnonzero(counts >= min_votes)
    if not len(pos):
        raise MinerConfigError(
            f"posmine: no corpus name is the top-1 of {min_votes} or more of the {len(top1)} "
            f"ID-train images (most votes: {int(counts.max()) if len(counts) else 0}); "
            "lower min_votes"
        )
    neg, neg_scores = select_negatives(
        inputs, pos, inputs.corpus_emb[pos], negatives, num_negatives, quantile
    )
    share = counts / max(1, len(top1))
    return LabelSet(
        "posmine",
        inputs.corpus_names,
        pos,
        neg,
        pos_votes=counts[pos],
        pos_scores=share[pos],
        neg_votes=counts[neg],
        neg_scores=neg_scores if negatives == "dissimilar" else share[neg],
        # The parameters that made it, where they differ from those asked for: a fixed
        # number of positives (matched or given) makes the vote threshold moot.
        params={
            "min_votes": min_votes if num_positives is None else None,
            "num_positives": num_positives,
        },
        stats={
            "n_images": int(len(top1)),
            "n_distinct_top1": int((counts > 0).sum()),
            "images_covered": float(share[pos].sum()),
        },
    )
