"""Score files: ``results/{model}/scores/{idset}.{method}.h5``, one per fitted detector.

One HDF5 group per scored dataset (the ID set's test sets and OOD benchmarks), each with
``scores`` float64 [N] (higher = more in-distribution) and ``labels`` int64 [N] (the image
file's labels, -1 where unknown) and attributes naming the dataset and its embedding file. The
file's attributes describe the detector (score, params, τ, label counts) and the model, ID set
and method.

A detector that adapts at test time is scored on one stream per (ID test set, benchmark) pair
(clustermine.streams): its scores are in ``pairs/<test set>/<benchmark>`` (``id_scores``,
``ood_scores``, each in its dataset's row order, and ``order``, the stream order), and its
dataset groups hold the labels only. :func:`read_pair` reads a pair from either kind of file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import h5py
import numpy as np

from clustermine.atomic import atomic_path
from clustermine.h5io import EmbeddingFileError, read_attrs, write_attrs
from clustermine.missing_files import missing_file


@dataclass
class ScoreSet:
    """The scores of one dataset; ``attrs`` holds the file's and the dataset's attributes."""

    scores: np.ndarray
    labels: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def write_score_file(
    path: str | os.PathLike,
    sets: Mapping[str, ScoreSet],
    attrs: Mapping[str, Any],
    pairs: Mapping[tuple[str, str], Any] | None = None,
) -> None:
    """Atomically write the scores of every dataset in ``sets`` (name → scores; ``scores``
    None for a stream-scored detector) and the stream scores of ``pairs``
    ((test set, benchmark) → clustermine.streams.StreamScores)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, data in sets.items():
            labels = np.asarray(data.labels, dtype=np.int64)
            group = f.create_group(name)
            if data.scores is not None:
                scores = np.asarray(data.scores, dtype=np.float64)
                if scores.ndim != 1 or labels.shape != scores.shape:
                    raise ValueError(
                        f"{path}: {name}: scores {scores.shape} and labels {labels.shape} "
                        "must match"
                    )
                group.create_dataset("scores", data=scores)
            group.create_dataset("labels", data=labels)
            write_attrs(group, {**data.attrs, "dataset": name, "num_samples": len(labels)})
        for (test, bench), stream in (pairs or {}).items():
            group = f.create_group(f"pairs/{test}/{bench}")
            group.create_dataset("id_scores", data=np.asarray(stream.id_scores, np.float64))
            group.create_dataset("ood_scores", data=np.asarray(stream.ood_scores, np.float64))
            group.create_dataset("order", data=np.asarray(stream.order, np.int64))
            write_attrs(group, {"stream_seed": stream.seed, "testset": test, "benchmark": bench})
        write_attrs(
            f, {**attrs, "kind": "scores", "datasets": list(sets), "streams": bool(pairs)}
        )


def read_scores(path: str | os.PathLike, dataset: str) -> ScoreSet:
    """The scores of ``dataset`` in a score file."""
    if not os.path.exists(path):
        raise FileNotFoundError(missing_file(path, "score file"))
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "scores":
            raise EmbeddingFileError(f"{path}: not a score file; delete it and rerun rule score")
        if dataset not in f:
            raise EmbeddingFileError(
                f"{path} holds no scores of {dataset!r} (it has {sorted(f)}); delete it so that "
                "it is rescored with the ID set's current datasets"
            )
        group = f[dataset]
        if "scores" not in group:
            raise EmbeddingFileError(
                f"{path}: {dataset!r} was scored on streams, one per (ID test set, benchmark) "
                "pair; read a pair (clustermine.score_files.read_pair)"
            )
        return ScoreSet(
            group["scores"][()].astype(np.float64),
            group["labels"][()].astype(np.int64),
            {**read_attrs(f), **read_attrs(group)},
        )


def read_pair(path: str | os.PathLike, testset: str, benchmark: str) -> tuple[ScoreSet, ScoreSet]:
    """The scores of ID test set ``testset`` and OOD set ``benchmark`` as they are compared:
    from their common stream for a test-time-adaptive detector, else each dataset's own."""
    if not os.path.exists(path):
        raise FileNotFoundError(missing_file(path, "score file"))
    with h5py.File(path, "r") as f:
        key = f"pairs/{testset}/{benchmark}"
        if key not in f:
            return read_scores(path, testset), read_scores(path, benchmark)
        group, attrs = f[key], read_attrs(f)
        extra = read_attrs(group)
        labels = {d: f[d]["labels"][()].astype(np.int64) for d in (testset, benchmark)}
        return (
            ScoreSet(group["id_scores"][()], labels[testset], {**attrs, **extra}),
            ScoreSet(group["ood_scores"][()], labels[benchmark], {**attrs, **extra}),
        )
