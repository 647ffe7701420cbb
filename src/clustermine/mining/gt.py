"""Y_GT: the ID class names themselves (the zero-shot baselines MCM, MaxLogit, Energy, MD)."""

from __future__ import annotations

from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MiningInputs
from clustermine.mining.negatives import select_negatives


def mine_gt(
    inputs: MiningInputs,
    *,
    negatives: str = "complement",
    num_negatives: int = 10000,
    quantile: float = 0.95,
    missing_gt: str = "error",
) -> LabelSet:
    """Positives = Y_GT; negatives = the rest of the corpus by default."""
    pos, missing = inputs.ground_truth(missing_gt)
    neg, neg_scores = select_negatives(inputs, pos, negatives, num_negatives, quantile)
    return LabelSet(
        "gt",
        inputs.corpus_names,
        pos,
        neg,
        neg_scores=neg_scores,
        params={
            "negatives": negatives,
            "num_negatives": num_negatives,
            "quantile": quantile,
            "missing_gt": missing_gt,
        },
        stats={"n_classes": len(inputs.class_names or []), "missing_gt": missing},
    )
