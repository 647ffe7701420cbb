"""Cluster files: ``results/{model}/clusters/{dataset}.{clusterer}-C{C}.h5``.

Datasets: ``assignments`` int64 [N], ``head_losses`` float64 [H] (k-means: [1], the inertia),
``sizes`` int64 [C], optional ``loss_history`` [epochs or iterations, H] and
``second_assignments`` int64 [N] (the second most likely cluster; TEMI). Attributes: the
clusterer, C, the chosen head, all parameters (JSON), the seed, the ``health`` record (JSON),
whatever the clusterer reports (device, time) and the model/dataset attributes of the
embedding file clustered. Files written before the health check lack ``health`` and
``second_assignments``; they read with an empty health record and no second assignments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from clustermine.clustering import ClusterResult
from clustermine.atomic import atomic_path
from clustermine.h5io import EmbeddingFileError, read_attrs, write_attrs

# Attributes owned by the result itself; everything else in the file is context.
_RESULT_KEYS = ("kind", "clusterer", "num_clusters", "best_head", "params", "seed", "health")


def write_clusters(
    path: str | os.PathLike, result: ClusterResult, attrs: Mapping[str, Any] | None = None
) -> None:
    """Atomically write ``result``; ``attrs`` (e.g. the image file's model attributes) go
    alongside the result's own attributes, which take precedence."""
    result.validate()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("assignments", data=result.assignments.astype(np.int64))
        f.create_dataset("head_losses", data=result.head_losses.astype(np.float64))
        f.create_dataset("sizes", data=result.sizes)
        if result.loss_history is not None:
            f.create_dataset("loss_history", data=np.asarray(result.loss_history, np.float64))
        if result.second_assignments is not None:
            f.create_dataset("second_assignments", data=result.second_assignments)
        write_attrs(
            f,
            {
                **dict(attrs or {}),
                **result.attrs,
                "kind": "clusters",
                "clusterer": result.clusterer,
                "num_clusters": int(result.num_clusters),
                "best_head": int(result.best_head),
                "params": dict(result.params),
                "seed": int(result.seed),
                "health": dict(result.health),
            },
        )


def read_clusters(path: str | os.PathLike) -> ClusterResult:
    """Read a cluster file; ``attrs`` of the result holds every non-result attribute."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: cluster file does not exist")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("assignments", "head_losses") if k not in f]
        if missing or f.attrs.get("kind") != "clusters":
            raise EmbeddingFileError(
                f"{path}: not a cluster file (missing {missing or 'kind=clusters'}); delete it "
                "and rerun the cluster rule"
            )
        attrs = read_attrs(f)
        history = f["loss_history"][()] if "loss_history" in f else None
        second = f["second_assignments"][()] if "second_assignments" in f else None
        result = ClusterResult(
            assignments=f["assignments"][()],
            num_clusters=int(attrs["num_clusters"]),
            clusterer=str(attrs["clusterer"]),
            head_losses=f["head_losses"][()],
            best_head=int(attrs.get("best_head", 0)),
            params=dict(attrs.get("params") or {}),
            seed=int(attrs.get("seed", 0)),
            loss_history=history,
            attrs={k: v for k, v in attrs.items() if k not in _RESULT_KEYS},
            health=dict(attrs.get("health") or {}),
            second_assignments=second,
        )
    return result


def read_cluster_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Every attribute of a cluster file (health, parameters, ground-truth agreement, ...)
    without reading its arrays: what the report's clustering table needs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: cluster file does not exist")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "clusters":
            raise EmbeddingFileError(
                f"{path}: not a cluster file; delete it and rerun the cluster rule"
            )
        attrs = read_attrs(f)
    attrs.setdefault("health", {})
    return attrs
