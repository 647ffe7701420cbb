"""NegLabel (Jiang et al., ICLR 2024): Y_GT as positives and the K corpus names least similar
to Y_GT as negatives, ranked by the 0.95-quantile of their cosines to the Y_GT texts."""

from __future__ import annotations

from clustermine.labelsets import LabelSet
from clustermine.mining.gt import gt_stats
from clustermine.mining.inputs import MiningInputs
from clustermine.mining.negatives import select_negatives


def mine_neglabel(
    inputs: MiningInputs,
    *,
    num_negatives: int,
    quantile: float,
    missing_gt: str,
) -> LabelSet:
    """Negative scores are the candidates' quantile similarities to Y_GT (lower = kept first)."""
    gt = inputs.ground_truth(missing_gt)
    neg, qsim = select_negatives(
        inputs, gt.corpus_rows, gt.embeddings, "dissimilar", num_negatives, quantile
    )
    return LabelSet(
        "neglabel",
        inputs.corpus_names,
        negatives=neg,
        neg_scores=qsim,
        class_names=inputs.class_names,
        stats={
            **gt_stats(inputs, gt),
            "n_candidates": len(inputs.corpus_names) - len(gt.corpus_rows),
            "max_kept_quantile_sim": float(qsim.max()) if len(qsim) else None,
        },
        **gt.positives(),
    )
