"""Y_GT: the ID class names themselves (the zero-shot baselines MCM, MaxLogit, Energy, MD)."""

from __future__ import annotations

from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MiningInputs
from clustermine.mining.negatives import select_negatives


def mine_gt(
    inputs: MiningInputs,
    *,
    negatives: str,
    num_negatives: int,
    quantile: float,
    missing_gt: str,
) -> LabelSet:
    """Positives = Y_GT; negatives = the corpus names that are not Y_GT names, by default."""
    gt = inputs.ground_truth(missing_gt)
    neg, neg_scores = select_negatives(
        inputs, gt.corpus_rows, gt.embeddings, negatives, num_negatives, quantile
    )
    return LabelSet(
        "gt",
        inputs.corpus_names,
        negatives=neg,
        neg_scores=neg_scores,
        class_names=inputs.class_names,
        stats=gt_stats(inputs, gt),
        **gt.positives(),
    )


def gt_stats(inputs: MiningInputs, gt) -> dict:
    return {
        "n_classes": len(inputs.class_names or []),
        "n_gt": len(gt.names),
        "gt_source": "classes" if gt.from_classes else "corpus",
        "gt_in_corpus": int(len(gt.corpus_rows)),
        "gt_not_in_corpus": gt.missing,
    }


def positives_or_gt(inputs: MiningInputs, missing_gt: str) -> tuple[dict, dict]:
    """The positives of the label set named by ``positives_of`` when there is one, else Y_GT:
    the ``LabelSet`` keyword arguments that make them the positives, and statistics about
    them (miners that choose only negatives: debiased, names_file)."""
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
