"""How well clusters agree with zero-shot labels and, where known, with ground truth.

All functions are pure numpy (plus scikit-learn/scipy for NMI, ARI and the Hungarian
matching) and work on sparse counts, so 1.28M samples × 4000 clusters × 80k corpus labels
never build a dense contingency table. Samples with a negative cluster or label (unknown)
are left out. Entropies are in nats (natural logarithm).
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np


def _pairs(assignments: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(assignments, dtype=np.int64).reshape(-1)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if a.shape != y.shape:
        raise ValueError(f"{len(a)} cluster assignments but {len(y)} labels")
    keep = (a >= 0) & (y >= 0)
    return a[keep], y[keep]


def contingency(
    assignments: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero cells of the cluster × label table: (cluster, label, count), sorted by
    cluster, then count descending, then label ascending."""
    a, y = _pairs(assignments, labels)
    if not len(a):
        return (np.empty(0, np.int64),) * 3
    width = np.int64(y.max()) + 1
    keys, counts = np.unique(a * width + y, return_counts=True)
    cluster, label = keys // width, keys % width
    order = np.lexsort((label, -counts, cluster))
    return cluster[order], label[order], counts[order].astype(np.int64)


def majority_vote(
    assignments: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty cluster: (cluster id, majority label, its count, cluster size).

    Ties between labels go to the lower label index.
    """
    cluster, label, counts = contingency(assignments, labels)
    first = np.r_[True, cluster[1:] != cluster[:-1]] if len(cluster) else np.zeros(0, bool)
    sizes = np.bincount(np.searchsorted(cluster[first], cluster), weights=counts)
    return cluster[first], label[first], counts[first], sizes.astype(np.int64)


def purity(assignments: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples carrying their cluster's majority label."""
    _, _, majority, sizes = majority_vote(assignments, labels)
    return float(majority.sum() / sizes.sum()) if sizes.sum() else float("nan")


def mean_entropy(assignments: np.ndarray, labels: np.ndarray) -> float:
    """Size-weighted mean over clusters of the entropy (nats) of the labels within a cluster.

    0 when every cluster holds a single label; ln(L) at most for L labels.
    """
    cluster, _, counts = contingency(assignments, labels)
    if not len(cluster):
        return float("nan")
    ids, inverse = np.unique(cluster, return_inverse=True)
    sizes = np.bincount(inverse, weights=counts)
    p = counts / sizes[inverse]
    # Σ_c (n_c/N) H_c = −(1/N) Σ_cells n_cl ln(n_cl/n_c)
    return float(-(counts * np.log(p)).sum() / sizes.sum())


def voted_labels(assignments: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Y_pos (labels voted by at least one cluster, sorted) and how many clusters voted each."""
    _, voted, _, _ = majority_vote(assignments, labels)
    return np.unique(voted, return_counts=True)


def redundancy(assignments: np.ndarray, labels: np.ndarray) -> float:
    """Share of Y_pos voted by more than one cluster."""
    _, votes = voted_labels(assignments, labels)
    return float(np.mean(votes > 1)) if len(votes) else float("nan")


def ypos_per_cluster(
    assignments: np.ndarray, labels: np.ndarray, num_clusters: int | None = None
) -> float:
    """|Y_pos| / C, with C the non-empty clusters unless ``num_clusters`` is given."""
    ids, _, _, _ = majority_vote(assignments, labels)
    c = len(ids) if num_clusters is None else int(num_clusters)
    return float(len(voted_labels(assignments, labels)[0]) / c) if c else float("nan")


def _dense_table(assignments: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """Cluster × class counts over the clusters and classes that occur (ids made contiguous)."""
    a, y = _pairs(assignments, ground_truth)
    _, a = np.unique(a, return_inverse=True)
    _, y = np.unique(y, return_inverse=True)
    table = np.zeros((a.max(initial=-1) + 1, y.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (a, y), 1)
    return table


def hungarian_accuracy(assignments: np.ndarray, ground_truth: np.ndarray) -> float:
    """Accuracy under the best one-to-one map of clusters to classes (C may differ from K:
    only min(C, K) clusters get a class; samples of unmatched clusters count as wrong)."""
    from scipy.optimize import linear_sum_assignment

    table = _dense_table(assignments, ground_truth)
    if not table.size:
        return float("nan")
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def nmi(assignments: np.ndarray, ground_truth: np.ndarray) -> float:
    """Normalised mutual information (arithmetic normalisation, scikit-learn's default)."""
    from sklearn.metrics import normalized_mutual_info_score

    a, y = _pairs(assignments, ground_truth)
    return float(normalized_mutual_info_score(y, a)) if len(a) else float("nan")


def ari(assignments: np.ndarray, ground_truth: np.ndarray) -> float:
    """Adjusted Rand index."""
    from sklearn.metrics import adjusted_rand_score

    a, y = _pairs(assignments, ground_truth)
    return float(adjusted_rand_score(y, a)) if len(a) else float("nan")


def cluster_to_class(table: np.ndarray) -> np.ndarray:
    """Class of every cluster (rows of a cluster × class table): the best one-to-one
    (Hungarian) match first, then every cluster left unmatched (C > K) to its majority class,
    as the over-clustering evaluation of TEMI's code does."""
    from scipy.optimize import linear_sum_assignment

    mapping = table.argmax(axis=1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping[rows] = cols
    return mapping


def overclustering_accuracy(assignments: np.ndarray, ground_truth: np.ndarray) -> float:
    """Accuracy when clusters are matched one-to-one to classes and each extra cluster
    (C > K) goes to its majority class; equals :func:`hungarian_accuracy` when C <= K."""
    table = _dense_table(assignments, ground_truth)
    if not table.size:
        return float("nan")
    mapping = cluster_to_class(table)
    return float(table[np.arange(len(table)), mapping].sum() / table.sum())


def per_class_accuracy(assignments: np.ndarray, ground_truth: np.ndarray) -> float:
    """Accuracy averaged over the classes (each class weighs the same, however many samples
    it has), under the cluster-to-class map of :func:`overclustering_accuracy`: the
    class-imbalance view of Adaloglou et al. (2024)."""
    table = _dense_table(assignments, ground_truth)
    if not table.size:
        return float("nan")
    mapping = cluster_to_class(table)
    correct = np.zeros(table.shape[1])
    np.add.at(correct, mapping, table[np.arange(len(table)), mapping])
    return float(np.mean(correct / table.sum(axis=0)))


def class_coverage(assignments: np.ndarray, ground_truth: np.ndarray) -> float:
    """Share of the classes that own at least one cluster (are the majority class of one);
    classes swallowed by bigger ones own none."""
    table = _dense_table(assignments, ground_truth)
    if not table.size:
        return float("nan")
    return float(len(np.unique(table.argmax(axis=1))) / table.shape[1])


def ground_truth_agreement(assignments: np.ndarray, ground_truth: np.ndarray) -> dict[str, float]:
    """Every ground-truth metric of the clustering benchmark (NMI, ARI, one-to-one Hungarian
    accuracy, over-clustering accuracy, per-class accuracy, class coverage) and the number of
    classes; empty without any known label."""
    y = np.asarray(ground_truth)
    if not (y >= 0).any():
        return {}
    return {
        "nmi": nmi(assignments, y),
        "ari": ari(assignments, y),
        "hungarian_accuracy": hungarian_accuracy(assignments, y),
        "overclustering_accuracy": overclustering_accuracy(assignments, y),
        "per_class_accuracy": per_class_accuracy(assignments, y),
        "class_coverage": class_coverage(assignments, y),
        "num_classes": int(len(np.unique(y[y >= 0]))),
    }


# --- health of a clustering: did it learn, and are the clusters used? ----------------------

# "Most samples sit in few clusters": half of the samples in at most this share of the C
# clusters (at least one cluster), holding at least twice their balanced share.
CONCENTRATION_SHARE = 0.05
# A TEMI head "stayed near uniform" when its final loss is less than this many times the loss
# of uniform outputs (both are negative; see uniform_temi_loss).
LEARNED_LOSS_RATIO = 1.5


def size_statistics(assignments: np.ndarray, num_clusters: int) -> dict[str, Any]:
    """How the samples spread over the C clusters: empty clusters, the entropy of the cluster
    sizes (nats; ln C when balanced), the largest cluster's share and the fewest clusters that
    hold half of the samples (C/2 when balanced)."""
    a = np.asarray(assignments, dtype=np.int64).reshape(-1)
    sizes = np.bincount(a[a >= 0], minlength=int(num_clusters))
    n = int(sizes.sum())
    out: dict[str, Any] = {
        "num_clusters": int(num_clusters),
        "nonempty_clusters": int((sizes > 0).sum()),
        "empty_clusters": int((sizes == 0).sum()),
    }
    if not n:
        return out
    p = sizes[sizes > 0] / n
    entropy = float(-(p * np.log(p)).sum())
    ordered = np.sort(sizes)[::-1]
    half = int(np.searchsorted(np.cumsum(ordered), n / 2) + 1)
    out.update(
        size_entropy=entropy,
        size_entropy_ratio=entropy / math.log(num_clusters) if num_clusters > 1 else 1.0,
        largest_share=float(ordered[0] / n),
        clusters_for_half=half,
        share_of_half_clusters=float(ordered[:half].sum() / n),
    )
    return out


def is_concentrated(stats: Mapping[str, Any]) -> bool:
    """Most samples in few clusters (:data:`CONCENTRATION_SHARE`) by :func:`size_statistics`."""
    if "clusters_for_half" not in stats:
        return False
    c, k = stats["num_clusters"], stats["clusters_for_half"]
    few = k <= max(1, int(CONCENTRATION_SHARE * c))
    return few and stats["share_of_half_clusters"] >= min(1.0, 2 * k / c)


def uniform_temi_loss(num_clusters: int, beta: float) -> float:
    """TEMI loss of a head whose student, teacher and prior are all uniform:
    pmi = ln(C · C^-2β · C) = 2(1 − β) ln C and w = 1/C, so the loss is −2(1 − β) ln(C) / C
    (−0.012 for C = 400, β = 0.6). A head that learned nothing stays near it."""
    return -2.0 * (1.0 - beta) * math.log(num_clusters) / num_clusters


def clustering_health(
    assignments: np.ndarray,
    num_clusters: int,
    **extra: Any,
) -> dict[str, Any]:
    """The health record of a clustering: :func:`size_statistics` plus what the clusterer
    reports in ``extra``, and ``warnings`` (short codes) with ``messages`` (sentences).

    TEMI passes ``best_head_loss``, ``beta``, ``teacher_max_prob``, ``epochs`` and
    ``warmup_epochs``; k-means its ``iterations`` and ``max_iter``. Codes: ``not_learned``
    (the best head's loss is less than :data:`LEARNED_LOSS_RATIO` times the uniform-output
    loss), ``all_warmup`` (epochs <= warm-up epochs), ``concentrated``
    (:func:`is_concentrated`).
    """
    health: dict[str, Any] = {**size_statistics(assignments, num_clusters), **extra}
    warnings, messages = [], []
    if "best_head_loss" in extra and "beta" in extra:
        uniform = uniform_temi_loss(num_clusters, extra["beta"])
        ratio = extra["best_head_loss"] / uniform
        health.update(uniform_loss=uniform, loss_ratio=ratio, uniform_max_prob=1 / num_clusters)
        if ratio < LEARNED_LOSS_RATIO:
            warnings.append("not_learned")
            messages.append(
                f"the best head's final loss {extra['best_head_loss']:.4g} is only "
                f"{ratio:.2f}x the loss of uniform outputs ({uniform:.4g}): the heads stayed "
                "near uniform and the clusters are close to random; train longer (epochs), "
                "raise lr, or z-score the input (zscore: true)"
            )
    if "epochs" in extra and extra.get("warmup_epochs", 0) >= extra["epochs"]:
        warnings.append("all_warmup")
        messages.append(
            f"warmup_epochs={extra['warmup_epochs']} >= epochs={extra['epochs']}: the whole "
            "run was learning-rate warm-up"
        )
    if is_concentrated(health):
        warnings.append("concentrated")
        messages.append(
            f"{health['share_of_half_clusters']:.0%} of the samples sit in "
            f"{health['clusters_for_half']} of {num_clusters} clusters "
            f"({health['empty_clusters']} empty)"
        )
    health.update(warnings=warnings, messages=messages)
    return health


def cluster_report(
    assignments: np.ndarray,
    zero_shot: np.ndarray | None = None,
    ground_truth: np.ndarray | None = None,
    num_clusters: int | None = None,
) -> dict[str, Any]:
    """Every cluster statistic that the given labels allow, as a flat dict.

    ``zero_shot``: top-1 corpus label per sample (purity, entropy, Y_pos, redundancy);
    ``ground_truth``: class per sample, -1 where unknown (NMI, ARI, Hungarian accuracy).
    """
    a = np.asarray(assignments, dtype=np.int64)
    sizes = np.bincount(a[a >= 0]) if (a >= 0).any() else np.zeros(0, np.int64)
    nonempty = sizes[sizes > 0]
    out: dict[str, Any] = {
        "num_samples": int(len(a)),
        "num_clusters": int(num_clusters if num_clusters is not None else len(nonempty)),
        "nonempty_clusters": int(len(nonempty)),
        "min_size": int(nonempty.min()) if len(nonempty) else 0,
        "median_size": float(np.median(nonempty)) if len(nonempty) else 0.0,
        "max_size": int(nonempty.max()) if len(nonempty) else 0,
    }
    if zero_shot is not None:
        ypos, votes = voted_labels(a, zero_shot)
        out.update(
            purity=purity(a, zero_shot),
            entropy_nats=mean_entropy(a, zero_shot),
            num_ypos=int(len(ypos)),
            ypos_per_cluster=len(ypos) / out["num_clusters"] if out["num_clusters"] else np.nan,
            redundancy=float(np.mean(votes > 1)) if len(votes) else float("nan"),
        )
    if ground_truth is not None and (np.asarray(ground_truth) >= 0).any():
        out.update(ground_truth_agreement(a, ground_truth), gt_purity=purity(a, ground_truth))
    return out


def elbow(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The x of the point farthest from the chord through the first and last points, after
    scaling both axes to [0, 1] (the "kneedle" elbow); needs three or more points."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) < 3:
        raise ValueError(f"an elbow needs at least 3 points, got {len(x)}")
    xn = (x - x[0]) / (x[-1] - x[0] or 1.0)
    yn = (y - y[0]) / (y[-1] - y[0] or 1.0)
    # Distance to the line from (0, 0) to (1, 1), up to a constant factor.
    return float(x[int(np.argmax(np.abs(yn - xn)))])


def sweep_report(
    assignments_by_c: Mapping[int, np.ndarray],
    zero_shot: np.ndarray | None = None,
    ground_truth: np.ndarray | None = None,
    elbow_of: str = "num_ypos",
) -> tuple[list[dict[str, Any]], float | None]:
    """:func:`cluster_report` for every C of a sweep (rows sorted by C) and the elbow C of
    the statistic ``elbow_of`` (None when fewer than three C or the statistic is absent)."""
    rows = []
    for c in sorted(assignments_by_c):
        rows.append(
            {"C": int(c), **cluster_report(assignments_by_c[c], zero_shot, ground_truth, c)}
        )
    knee = None
    if len(rows) >= 3 and all(elbow_of in r for r in rows):
        knee = elbow([r["C"] for r in rows], [r[elbow_of] for r in rows])
    return rows, knee


# --- the cluster-sweep file: results/{model}/clusters/sweeps/{idset}.{clusterer}.tsv -----------


def write_sweep_table(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], knee: float | None
) -> None:
    """One row per C (the :func:`sweep_report` rows) and an ``elbow`` column marking the C of
    the elbow; floats with 6 significant digits."""
    from clustermine.atomic import atomic_path

    columns = list(dict.fromkeys(key for row in rows for key in row)) + ["elbow"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, delimiter="\t", restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            cells = {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()}
            writer.writerow({**cells, "elbow": int(row["C"] == knee)})


def read_sweep_table(path: str | os.PathLike):
    """A cluster-sweep TSV as a pandas DataFrame (one row per C)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t")
    except FileNotFoundError as err:
        raise ValueError(f"{path}: cluster-sweep file does not exist") from err
    if "C" not in frame.columns:
        raise ValueError(f"{path}: cluster-sweep file lacks column 'C'; rerun its cluster_sweep job")
    return frame
