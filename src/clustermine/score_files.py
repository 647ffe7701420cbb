"""Score files: ``results/{model}/scores/{idset}.{method}/{dataset}.h5``.

Datasets ``scores`` float64 [N] (higher = more in-distribution) and ``labels`` int64 [N] (the
image file's labels, -1 where unknown); attributes describe the detector (score, params, τ,
label counts) and the model, ID set, method and dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import h5py
import numpy as np

from clustermine.h5io import EmbeddingFileError, atomic_path, read_attrs, write_attrs


@dataclass
class ScoreFile:
    scores: np.ndarray
    labels: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def write_scores(
    path: str | os.PathLike, scores: np.ndarray, labels: np.ndarray, attrs: Mapping[str, Any]
) -> None:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"{path}: scores {scores.shape} and labels {labels.shape} must match")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("scores", data=scores)
        f.create_dataset("labels", data=labels)
        write_attrs(f, {**attrs, "kind": "scores", "num_samples": int(len(scores))})


def read_scores(path: str | os.PathLike) -> ScoreFile:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: score file does not exist")
    with h5py.File(path, "r") as f:
        if "scores" not in f:
            raise EmbeddingFileError(f"{path}: not a score file (no 'scores' dataset)")
        scores = f["scores"][()].astype(np.float64)
        labels = f["labels"][()] if "labels" in f else np.full(len(scores), -1, np.int64)
        return ScoreFile(scores, labels, read_attrs(f))
