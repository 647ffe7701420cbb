"""Score files: ``results/{model}/scores/{idset}.{method}.h5``, one per fitted detector.

One HDF5 group per scored dataset (the ID set's test sets and OOD benchmarks), each with
``scores`` float64 [N] (higher = more in-distribution) and ``labels`` int64 [N] (the image
file's labels, -1 where unknown) and attributes naming the dataset and its embedding file. The
file's attributes describe the detector (score, params, τ, label counts) and the model, ID set
and method.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import h5py
import numpy as np

from clustermine.h5io import EmbeddingFileError, atomic_path, read_attrs, write_attrs


@dataclass
class ScoreSet:
    """The scores of one dataset; ``attrs`` holds the file's and the dataset's attributes."""

    scores: np.ndarray
    labels: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def write_score_file(
    path: str | os.PathLike, sets: Mapping[str, ScoreSet], attrs: Mapping[str, Any]
) -> None:
    """Atomically write the scores of every dataset in ``sets`` (name → scores)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, data in sets.items():
            scores = np.asarray(data.scores, dtype=np.float64)
            labels = np.asarray(data.labels, dtype=np.int64)
            if scores.ndim != 1 or labels.shape != scores.shape:
                raise ValueError(
                    f"{path}: {name}: scores {scores.shape} and labels {labels.shape} must match"
                )
            group = f.create_group(name)
            group.create_dataset("scores", data=scores)
            group.create_dataset("labels", data=labels)
            write_attrs(group, {**data.attrs, "dataset": name, "num_samples": len(scores)})
        write_attrs(f, {**attrs, "kind": "scores", "datasets": list(sets)})


def read_scores(path: str | os.PathLike, dataset: str) -> ScoreSet:
    """The scores of ``dataset`` in a score file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: score file does not exist")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "scores":
            raise EmbeddingFileError(f"{path}: not a score file; delete it and rerun rule score")
        if dataset not in f:
            raise EmbeddingFileError(
                f"{path} holds no scores of {dataset!r} (it has {sorted(f)}); delete it so that "
                "it is rescored with the ID set's current datasets"
            )
        group = f[dataset]
        return ScoreSet(
            group["scores"][()].astype(np.float64),
            group["labels"][()].astype(np.int64),
            {**read_attrs(f), **read_attrs(group)},
        )
