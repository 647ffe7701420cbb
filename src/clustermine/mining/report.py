"""What a label-set sidecar records besides the labels: their quality against Y_GT and, for
cluster-based label sets, how the clusters relate to the zero-shot labels."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from clustermine.cluster_analysis import cluster_report
from clustermine.label_quality import label_quality
from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs

log = logging.getLogger(__name__)


def quality_of(
    labels: LabelSet, inputs: MiningInputs, per_label: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """``label_quality`` of the metrics files (Y_GT-relative numbers ``None`` without Y_GT);
    ``per_label`` receives the per-positive columns of the label-set file."""
    gt = None
    if inputs.class_names:
        try:
            gt = inputs.ground_truth("drop")
        except MinerConfigError as err:
            log.warning("label quality without Y_GT: %s", err)
    pos_syn = None
    if inputs.corpus_synsets is not None:
        class_syn = dict(zip(gt.class_rows.tolist(), gt.synsets)) if gt else {}
        pos_syn = [class_syn.get(int(i)) for i in labels.class_positives]
        pos_syn += [inputs.corpus_synsets[i] for i in labels.positives]
    return label_quality(
        labels.pos_names,
        labels.positive_embeddings(inputs.corpus_emb, inputs.class_emb),
        len(labels.negatives),
        len(labels.names),
        gt.names if gt else None,
        gt.embeddings if gt else None,
        pos_syn,
        gt.synsets if gt else None,
        per_label=per_label,
    )


def cluster_summary(
    inputs: MiningInputs, num_clusters: int | None, ground_truth: np.ndarray | None = None
) -> dict[str, Any]:
    """``cluster_analysis`` of the metrics files: C, purity, entropy (nats), redundancy,
    |Y_pos|/C, from the clusters and the zero-shot labels the label set was mined from; with
    ground-truth labels of the ID-train images also NMI, ARI and Hungarian accuracy."""
    report = cluster_report(
        inputs.cluster_assignments(), inputs.zero_shot_top1(), ground_truth, num_clusters
    )
    summary = {
        "C": report["num_clusters"],
        "purity": report["purity"],
        "entropy": report["entropy_nats"],
        "redundancy": report["redundancy"],
        "ypos_over_C": report["ypos_per_cluster"],
    }
    summary.update({k: report[k] for k in ("nmi", "ari", "hungarian_accuracy") if k in report})
    return summary
