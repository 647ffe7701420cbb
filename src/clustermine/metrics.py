"""OOD metrics: AUROC and FPR at 95% TPR, per benchmark and averaged.

Scores are "higher = more in-distribution" and ID is the positive class. AUROC counts ties as
one half (the Mann–Whitney statistic, as scikit-learn's ``roc_auc_score``). FPR95 follows the
CLIP-OOD convention of MCM and NegLabel by default: the fraction of OOD samples accepted at
the highest threshold that accepts at least 95% of the ID samples. ``"openood"`` is OpenOOD's
convention: OOD is the positive class and FPR95 is the fraction of ID samples rejected at the
highest OOD-score threshold that detects at least 95% of the OOD samples.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from clustermine.missing_files import missing_file

FPR_CONVENTIONS = ("clip", "openood")
# Keys every metrics file has (docs/methods.md, "Metrics JSON").
REQUIRED_KEYS = ("model", "idset", "method", "testset", "benchmarks")


class MetricsFileError(ValueError):
    """A metrics file is missing, not JSON, or lacks a key the tables need."""


def _check(scores: np.ndarray, what: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(scores):
        raise ValueError(f"{what}: no scores")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what}: {int((~np.isfinite(scores)).sum())} scores are NaN or inf")
    return scores


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Probability that an ID sample outscores an OOD one, ties counted half."""
    pos, neg = _check(id_scores, "ID scores"), _check(ood_scores, "OOD scores")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks handle ties
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def fpr_at_tpr(positives: np.ndarray, negatives: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of ``negatives`` with score ≥ t, where t is the highest threshold accepting
    at least ``tpr`` of ``positives`` (everything tied with t is accepted)."""
    pos, neg = _check(positives, "positive scores"), _check(negatives, "negative scores")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    # The ceil(tpr·n)-th largest positive is the highest threshold reaching the target.
    needed = int(np.ceil(tpr * len(pos) - 1e-9))
    threshold = np.sort(pos)[::-1][max(needed, 1) - 1]
    return float(np.mean(neg >= threshold))


def fpr95(id_scores: np.ndarray, ood_scores: np.ndarray, convention: str = "clip") -> float:
    if convention == "clip":
        return fpr_at_tpr(id_scores, ood_scores, 0.95)
    if convention == "openood":
        return fpr_at_tpr(-np.asarray(ood_scores), -np.asarray(id_scores), 0.95)
    raise ValueError(f"fpr convention must be one of {FPR_CONVENTIONS}, got {convention!r}")


def evaluate_benchmarks(
    id_scores: np.ndarray | Mapping[str, np.ndarray],
    benchmarks: Mapping[str, np.ndarray],
    convention: str = "clip",
    main: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``{"benchmarks": {name: {auroc, fpr95, n_id, n_ood}}, "mean": {auroc, fpr95}}``.

    ``id_scores`` is one array, or one per benchmark (a test-time-adaptive detector scores the
    ID set anew in each benchmark's stream). The mean runs over the ``main`` benchmarks
    (default: all); extra OOD sets are reported per benchmark only, as in the paper's tables.
    """
    if not benchmarks:
        raise ValueError("no OOD benchmarks to evaluate")
    per = {}
    for name, ood in benchmarks.items():
        ids = id_scores[name] if isinstance(id_scores, Mapping) else id_scores
        per[name] = {
            "auroc": auroc(ids, ood),
            "fpr95": fpr95(ids, ood, convention),
            "n_id": int(len(ids)),
            "n_ood": int(len(ood)),
        }
    averaged = [per[name] for name in (main if main is not None else per)]
    mean = {k: float(np.mean([m[k] for m in averaged])) for k in ("auroc", "fpr95")}
    return {"benchmarks": per, "mean": mean}


def metrics_record(
    *,
    model: str,
    idset: str,
    method: str,
    testset: str,
    detector: Mapping[str, Any],
    id_scores: np.ndarray | Mapping[str, np.ndarray],
    benchmarks: Mapping[str, np.ndarray],
    convention: str = "clip",
    main_benchmarks: Sequence[str] | None = None,
    label_quality: Mapping[str, Any] | None = None,
    cluster_analysis: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One metrics file: ID test set ``testset`` against every OOD benchmark.

    ``detector`` is what the score files record about the detector (``score``, ``labels``,
    ``params``, ``tau``). AUROC and FPR95 are fractions in [0, 1].
    """
    result = evaluate_benchmarks(id_scores, benchmarks, convention, main_benchmarks)
    tau = detector.get("tau")
    # HDF5 attributes store a missing value as "none".
    tau = None if tau is None or tau == "none" else float(tau)
    labels = detector.get("labels")
    return {
        "model": model,
        "idset": idset,
        "method": method,
        "testset": testset,
        "score": detector.get("score"),
        "labels": None if labels == "none" else labels,
        "params": dict(detector.get("params") or {}),
        "tau": tau,
        "fpr_convention": convention,
        "benchmarks": result["benchmarks"],
        "mean": result["mean"],
        "label_quality": dict(label_quality) if label_quality is not None else None,
        "cluster_analysis": dict(cluster_analysis) if cluster_analysis is not None else None,
    }


def evaluate_detector(
    scores_path: str | os.PathLike,
    *,
    model: str,
    idset: str,
    method: str,
    tests: Sequence[str],
    benchmarks: Sequence[str],
    labels: str | None = None,
    labels_path: str | os.PathLike | None = None,
    convention: str = "clip",
    main_benchmarks: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One metrics record per ID test set of ``tests``, from a detector's score file.

    Each (ID test set, benchmark) pair is compared as it was scored: from its common stream
    for a test-time-adaptive detector, else from each dataset's own scores. ``labels_path``
    is the detector's label-set file, whose sidecar gives the label quality and the cluster
    analysis of mined label sets.
    """
    from clustermine.labelsets import read_label_meta
    from clustermine.score_files import read_pair

    label_meta = read_label_meta(labels_path) if labels_path else {}
    records = []
    for testset in tests:
        pairs = {name: read_pair(scores_path, testset, name) for name in benchmarks}
        id_file = next(iter(pairs.values()))[0]
        records.append(metrics_record(
            model=model,
            idset=idset,
            method=method,
            testset=testset,
            detector={**id_file.attrs, "labels": labels},
            id_scores={name: pair[0].scores for name, pair in pairs.items()},
            benchmarks={name: pair[1].scores for name, pair in pairs.items()},
            convention=convention,
            main_benchmarks=main_benchmarks,
            label_quality=label_meta.get("label_quality"),
            cluster_analysis=label_meta.get("cluster_analysis"),
        ))
    return records


# --- the metrics file: results/{model}/metrics/{idset}.{method}.json ---------------------------
# {"records": [one metrics record per ID test set, in the ID set's order]}


def write_metrics(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> None:
    """Atomically write a detector's metrics records as JSON (non-finite numbers become
    null)."""
    from clustermine.atomic import atomic_path
    from clustermine.labelsets import jsonable

    if not records:
        raise ValueError(f"{path}: no metrics records to write (the ID set has no test set)")
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps({"records": jsonable(list(records))}, indent=2, sort_keys=True) + "\n"
        )


def read_metrics_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of one metrics file (one per ID test set), checking the keys every table
    relies on."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except FileNotFoundError as err:
        raise MetricsFileError(missing_file(path, "metrics file")) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MetricsFileError(
            f"{path}: not valid JSON ({err}); delete it and rerun its metrics job"
        ) from err
    records = content.get("records") if isinstance(content, Mapping) else None
    if not isinstance(records, list) or not records:
        raise MetricsFileError(
            f"{path}: not a metrics file: expected an object with a non-empty 'records' list, "
            "as the metrics stage writes (docs/results.md); delete it and rerun its metrics job"
        )
    return [_checked_record(path, i, rec) for i, rec in enumerate(records)]


def _checked_record(path: str | os.PathLike, i: int, rec: Any) -> dict[str, Any]:
    where = f"{path}: record {i}"
    if not isinstance(rec, Mapping):
        raise MetricsFileError(f"{where} is not an object")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing or not isinstance(rec.get("benchmarks"), Mapping) or not rec["benchmarks"]:
        raise MetricsFileError(
            f"{where}: not a metrics record: missing {missing or ['benchmarks (empty)']}; "
            "expected the keys written by the metrics stage (docs/results.md)"
        )
    for bench, vals in rec["benchmarks"].items():
        if not isinstance(vals, Mapping) or not {"auroc", "fpr95"} <= set(vals):
            raise MetricsFileError(f"{where}: benchmark {bench!r} lacks auroc/fpr95")
    return {**rec, "_path": str(path)}


def read_metrics(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Every record of every metrics file of ``paths``, checked, in file order."""
    return [rec for path in paths for rec in read_metrics_file(path)]
