"""Mined label sets and their files.

A label set names positive and negative corpus entries by their row index in the corpus text
file. It is written as a TSV people can read (``index, name, role, votes, score``; one row per
positive or negative) plus a JSON sidecar with the miner, its parameters and statistics.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clustermine.h5io import atomic_path

TSV_COLUMNS = ("index", "name", "role", "votes", "score")


class LabelSetFileError(ValueError):
    """A label-set file is missing, malformed or does not match its corpus."""


def normalize_name(name: str) -> str:
    """Case-folded, underscores as spaces, whitespace collapsed: how names are matched."""
    return " ".join(str(name).replace("_", " ").lower().split())


@dataclass
class LabelSet:
    """Positives and negatives as corpus row indices, with per-row votes and scores.

    ``votes`` and ``score`` are miner-specific (docs/methods.md): e.g. ClusterMine's votes are
    the clusters that chose a name and PosMine's the images that did; NegLabel's score is the
    0.95-quantile similarity to Y_GT. NaN where a miner defines none.
    """

    miner: str
    names: list[str]  # the whole corpus, so indices can be resolved without the text file
    positives: np.ndarray
    negatives: np.ndarray
    pos_votes: np.ndarray | None = None
    pos_scores: np.ndarray | None = None
    neg_votes: np.ndarray | None = None
    neg_scores: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positives = np.asarray(self.positives, dtype=np.int64).reshape(-1)
        self.negatives = np.asarray(self.negatives, dtype=np.int64).reshape(-1)
        n = len(self.names)
        for role, idx in (("positive", self.positives), ("negative", self.negatives)):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise LabelSetFileError(f"{role} index out of range for a corpus of {n} names")
            if len(np.unique(idx)) != len(idx):
                raise LabelSetFileError(f"duplicate {role} indices")
        if len(np.intersect1d(self.positives, self.negatives)):
            raise LabelSetFileError("a corpus name is both positive and negative")
        self.pos_votes = _column(self.pos_votes, len(self.positives), np.int64, "pos_votes")
        self.neg_votes = _column(self.neg_votes, len(self.negatives), np.int64, "neg_votes")
        self.pos_scores = _column(self.pos_scores, len(self.positives), np.float64, "pos_scores")
        self.neg_scores = _column(self.neg_scores, len(self.negatives), np.float64, "neg_scores")

    @property
    def pos_names(self) -> list[str]:
        return [self.names[i] for i in self.positives]

    @property
    def neg_names(self) -> list[str]:
        return [self.names[i] for i in self.negatives]

    def summary(self) -> dict[str, int]:
        return {
            "n_pos": int(len(self.positives)),
            "n_neg": int(len(self.negatives)),
            "n_corpus": int(len(self.names)),
        }


def _column(values, n: int, dtype, what: str) -> np.ndarray:
    if values is None:
        fill = -1 if dtype is np.int64 else np.nan
        return np.full(n, fill, dtype=dtype)
    values = np.asarray(values, dtype=dtype).reshape(-1)
    if len(values) != n:
        raise LabelSetFileError(f"{what} has {len(values)} entries for {n} labels")
    return values


def sidecar_path(tsv_path: str | os.PathLike) -> Path:
    """``labels/x.y.tsv`` → ``labels/x.y.json``."""
    return Path(tsv_path).with_suffix(".json")


def _fmt_score(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.6g}"


def write_label_set(
    tsv_path: str | os.PathLike, labels: LabelSet, extra: dict[str, Any] | None = None
) -> None:
    """Write the TSV and its JSON sidecar, each atomically."""
    rows = [
        (i, labels.names[i], "pos", v, s)
        for i, v, s in zip(labels.positives, labels.pos_votes, labels.pos_scores)
    ] + [
        (i, labels.names[i], "neg", v, s)
        for i, v, s in zip(labels.negatives, labels.neg_votes, labels.neg_scores)
    ]
    with atomic_path(tsv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(TSV_COLUMNS)
        for i, name, role, v, s in rows:
            w.writerow((int(i), name, role, "" if v < 0 else int(v), _fmt_score(float(s))))
    meta = {
        "miner": labels.miner,
        "params": labels.params,
        "stats": {**labels.summary(), **labels.stats},
        **(extra or {}),
    }
    with atomic_path(sidecar_path(tsv_path)) as tmp:
        tmp.write_text(json.dumps(_jsonable(meta), indent=2, sort_keys=True) + "\n")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_label_meta(tsv_path: str | os.PathLike) -> dict[str, Any]:
    path = sidecar_path(tsv_path)
    if not path.exists():
        raise LabelSetFileError(f"{path}: label-set sidecar missing (written with {tsv_path})")
    return json.loads(path.read_text())


def read_label_set(tsv_path: str | os.PathLike, corpus_names: Sequence[str]) -> LabelSet:
    """Read a label set and check every row's name against the corpus it indexes."""
    tsv_path = Path(tsv_path)
    if not tsv_path.exists():
        raise LabelSetFileError(f"{tsv_path}: label-set file does not exist")
    meta = read_label_meta(tsv_path)
    cols: dict[str, list] = {"pos": [[], [], []], "neg": [[], [], []]}
    with open(tsv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if tuple(reader.fieldnames or ()) != TSV_COLUMNS:
            raise LabelSetFileError(
                f"{tsv_path}: expected columns {TSV_COLUMNS}, found {reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            role = row["role"]
            if role not in cols:
                raise LabelSetFileError(f"{tsv_path}:{line}: role must be pos or neg, got {role!r}")
            i = int(row["index"])
            if not 0 <= i < len(corpus_names) or corpus_names[i] != row["name"]:
                raise LabelSetFileError(
                    f"{tsv_path}:{line}: row {i} {row['name']!r} does not match the corpus "
                    "text file; the label set was mined from another corpus. Re-run mining."
                )
            cols[role][0].append(i)
            cols[role][1].append(int(row["votes"]) if row["votes"] else -1)
            cols[role][2].append(float(row["score"]))
    (pi, pv, ps), (ni, nv, ns) = cols["pos"], cols["neg"]
    stats = {k: v for k, v in meta.get("stats", {}).items()}
    return LabelSet(
        meta["miner"], list(corpus_names), pi, ni, pv, ps, nv, ns, meta.get("params", {}), stats
    )
