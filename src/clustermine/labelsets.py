"""Mined label sets and their files.

A label set names positive and negative labels by their row in a text-embedding file: the
corpus file (``source = corpus``) or, for Y_GT, the file of the ID class names
(``source = classes``), which holds the class names exactly as the dataset spells them even
when the corpus lacks them; negatives may also be rows of a text file of labels beyond the
corpus (``source = extra``: CSP's conjugated labels), embedded with prompts of their own. It
is written as a TSV people can read (``index, name, role, source, votes, score``; one row per
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

from clustermine.atomic import atomic_path
from clustermine.missing_files import missing_file

TSV_COLUMNS = ("index", "name", "role", "source", "votes", "score")
# Optional per-positive quality columns (label_quality.label_quality): top-1 text cosine to
# Y_GT and WordNet hops to the nearest Y_GT synset; empty where undefined and on negatives.
QUALITY_COLUMNS = ("gt_sim", "gt_hops")


class LabelSetFileError(ValueError):
    """A label-set file is missing, malformed or does not match its text files."""


def _indices(values, n: int, what: str) -> np.ndarray:
    idx = np.asarray(values if values is not None else [], dtype=np.int64).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise LabelSetFileError(f"{what} index out of range for {n} names")
    if len(np.unique(idx)) != len(idx):
        raise LabelSetFileError(f"duplicate {what} indices")
    return idx


def _column(values, n: int, dtype, what: str) -> np.ndarray:
    if values is None:
        return np.full(n, -1 if dtype is np.int64 else np.nan, dtype=dtype)
    values = np.asarray(values, dtype=dtype).reshape(-1)
    if len(values) != n:
        raise LabelSetFileError(f"{what} has {len(values)} entries for {n} labels")
    return values


@dataclass
class LabelSet:
    """Positives and negatives as row indices, with per-row votes and scores.

    ``positives``/``negatives`` index the corpus; ``class_positives`` index ``class_names``
    (Y_GT taken from the class-name file). ``votes`` and ``score`` are miner-specific
    (docs/methods.md), -1 / NaN where a miner defines none. Negatives may go on past the
    corpus into ``extra_names`` (labels of a text file of their own, CSP's conjugated labels):
    negative ``len(names) + j`` is ``extra_names[j]``.
    """

    miner: str
    names: list[str]
    positives: np.ndarray
    negatives: np.ndarray
    pos_votes: np.ndarray | None = None
    pos_scores: np.ndarray | None = None
    neg_votes: np.ndarray | None = None
    neg_scores: np.ndarray | None = None
    class_names: list[str] | None = None
    class_positives: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    extra_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.names)
        self.positives = _indices(self.positives, n, "positive")
        self.negatives = _indices(self.negatives, n + len(self.extra_names), "negative")
        self.class_positives = _indices(
            self.class_positives, len(self.class_names or []), "class positive"
        )
        if len(np.intersect1d(self.positives, self.negatives)):
            raise LabelSetFileError("a corpus name is both positive and negative")
        self.pos_votes = _column(self.pos_votes, len(self.positives), np.int64, "pos_votes")
        self.neg_votes = _column(self.neg_votes, len(self.negatives), np.int64, "neg_votes")
        self.pos_scores = _column(self.pos_scores, len(self.positives), np.float64, "pos_scores")
        self.neg_scores = _column(self.neg_scores, len(self.negatives), np.float64, "neg_scores")

    @property
    def pos_names(self) -> list[str]:
        """All positive names: class positives (Y_GT) first, then corpus positives."""
        classes = [self.class_names[i] for i in self.class_positives] if self.class_names else []
        return classes + [self.names[i] for i in self.positives]

    @property
    def neg_names(self) -> list[str]:
        n = len(self.names)
        return [self.names[i] if i < n else self.extra_names[i - n] for i in self.negatives]

    @property
    def n_pos(self) -> int:
        return int(len(self.positives) + len(self.class_positives))

    def summary(self) -> dict[str, int]:
        return {
            "n_pos": self.n_pos,
            "n_neg": int(len(self.negatives)),
            "n_corpus": int(len(self.names)),
            "n_pos_from_classes": int(len(self.class_positives)),
        }

    def positive_embeddings(
        self, corpus_emb: np.ndarray, class_emb: np.ndarray | None
    ) -> np.ndarray:
        """Text embeddings of :attr:`pos_names`, in the same order."""
        parts = [corpus_emb[self.positives]]
        if len(self.class_positives):
            if class_emb is None:
                raise LabelSetFileError(
                    "the label set takes Y_GT from the class-name file, which was not given"
                )
            parts.insert(0, class_emb[self.class_positives])
        return np.concatenate(parts).astype(np.float32, copy=False)

    def negative_embeddings(
        self, corpus_emb: np.ndarray, extra_emb: np.ndarray | None = None
    ) -> np.ndarray:
        """Text embeddings of :attr:`neg_names`, in the same order: corpus rows, and rows of
        the extra text file (``extra_emb``) for negatives past the corpus."""
        n, neg = len(self.names), self.negatives
        extra = neg >= n
        if not extra.any():
            return np.asarray(corpus_emb[neg], dtype=np.float32)
        if extra_emb is None or len(extra_emb) != len(self.extra_names):
            raise LabelSetFileError(
                f"the label set has {int(extra.sum())} negatives of its extra text file "
                f"({len(self.extra_names)} labels), whose embeddings were not given"
            )
        out = np.empty((len(neg), corpus_emb.shape[1]), dtype=np.float32)
        out[~extra] = corpus_emb[neg[~extra]]
        out[extra] = extra_emb[neg[extra] - n]
        return out


def sidecar_path(tsv_path: str | os.PathLike) -> Path:
    """``labels/x.y.tsv`` → ``labels/x.y.json``."""
    return Path(tsv_path).with_suffix(".json")


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.6g}"


def write_label_set(
    tsv_path: str | os.PathLike,
    labels: LabelSet,
    extra: dict[str, Any] | None = None,
    per_label: dict[str, np.ndarray] | None = None,
) -> None:
    """Write the TSV and its JSON sidecar, each atomically. ``per_label`` holds the
    :data:`QUALITY_COLUMNS` of the positives (in :attr:`LabelSet.pos_names` order), if any."""
    rows = [
        (i, labels.class_names[i], "pos", "classes", -1, math.nan) for i in labels.class_positives
    ]
    rows += [
        (i, labels.names[i], "pos", "corpus", v, s)
        for i, v, s in zip(labels.positives, labels.pos_votes, labels.pos_scores)
    ]
    n = len(labels.names)
    rows += [
        (i, name, "neg", "corpus", v, s) if i < n else (i - n, name, "neg", "extra", v, s)
        for i, name, v, s in zip(
            labels.negatives, labels.neg_names, labels.neg_votes, labels.neg_scores
        )
    ]
    quality = [c for c in QUALITY_COLUMNS if per_label is not None and c in per_label]
    for col in quality:
        if len(per_label[col]) != labels.n_pos:
            raise LabelSetFileError(f"{col}: {len(per_label[col])} values for {labels.n_pos} positives")
    with atomic_path(tsv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(TSV_COLUMNS + tuple(quality))
        for row, (i, name, role, source, v, s) in enumerate(rows):
            # Positives come first; undefined values and negatives stay empty.
            values = [float(per_label[c][row]) if row < labels.n_pos else math.nan for c in quality]
            w.writerow((int(i), name, role, source, "" if v < 0 else int(v), _fmt(float(s)),
                        *["" if math.isnan(x) else _fmt(x) for x in values]))
    meta = {
        "miner": labels.miner,
        "params": labels.params,
        "stats": {**labels.stats, **labels.summary()},
        **(extra or {}),
    }
    with atomic_path(sidecar_path(tsv_path)) as tmp:
        tmp.write_text(json.dumps(jsonable(meta), indent=2, sort_keys=True) + "\n")


def jsonable(obj: Any) -> Any:
    """numpy values to Python ones; non-finite floats to ``None`` (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_label_meta(tsv_path: str | os.PathLike) -> dict[str, Any]:
    path = sidecar_path(tsv_path)
    if not path.exists():
        raise LabelSetFileError(f"{path}: label-set sidecar missing (written with {tsv_path})")
    return json.loads(path.read_text())


def read_label_set(
    tsv_path: str | os.PathLike,
    corpus_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    extra_names: Sequence[str] | None = None,
) -> LabelSet:
    """Read a label set and check every row's name against the text file it indexes
    (``extra_names``: the names of its extra text file, for negatives of source extra)."""
    tsv_path = Path(tsv_path)
    rows = _read_rows(tsv_path)
    meta = read_label_meta(tsv_path)
    sources = {"corpus": list(corpus_names), "classes": list(class_names or []),
               "extra": list(extra_names or [])}  # fmt: skip
    cols: dict[str, list[list]] = {k: [[], [], []] for k in ("pos", "neg", "cls")}
    for line, row in rows:
        role, source = row["role"], row["source"]
        if role not in ("pos", "neg") or source not in sources or (
            source == "extra" and role != "neg"
        ):
            raise LabelSetFileError(
                f"{tsv_path}:{line}: role must be pos|neg and source corpus|classes (or "
                "extra, for negatives)"
            )
        if source == "classes" and class_names is None:
            raise LabelSetFileError(
                f"{tsv_path}: takes Y_GT from the class-name file; pass its class names"
            )
        if source == "extra" and extra_names is None:
            raise LabelSetFileError(
                f"{tsv_path}: has negatives from a text file beyond the corpus (miner "
                f"{meta.get('miner')}: e.g. CSP's conjugated labels), which this reader was "
                "not given; such a label set cannot be read without it (it cannot be named "
                "by positives_of or names_from)"
            )
        i, names = int(row["index"]), sources[source]
        if not 0 <= i < len(names) or names[i] != row["name"]:
            raise LabelSetFileError(
                f"{tsv_path}:{line}: {source} row {i} {row['name']!r} does not match the "
                f"{source} text file; the label set was mined from other text embeddings. "
                "Re-run mining."
            )
        key = "cls" if source == "classes" else role
        cols[key][0].append(i + len(corpus_names) if source == "extra" else i)
        cols[key][1].append(int(row["votes"]) if row["votes"] else -1)
        cols[key][2].append(float(row["score"]))
    (pi, pv, ps), (ni, nv, ns), (ci, _, _) = cols["pos"], cols["neg"], cols["cls"]
    return LabelSet(
        meta["miner"],
        list(corpus_names),
        pi,
        ni,
        pv,
        ps,
        nv,
        ns,
        list(class_names) if class_names is not None else None,
        ci,
        meta.get("params", {}),
        dict(meta.get("stats", {})),
        list(extra_names or []),
    )


def _read_rows(tsv_path: str | os.PathLike) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every row of a label-set TSV, its columns checked: the one
    parser of the format (:func:`read_label_set`, :func:`positive_names` and
    :func:`read_label_table` read through it)."""
    path = Path(tsv_path)
    if not path.exists():
        raise LabelSetFileError(missing_file(path, "label-set file"))
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        fields = tuple(reader.fieldnames or ())
        if fields[: len(TSV_COLUMNS)] != TSV_COLUMNS or not set(fields[6:]) <= set(
            QUALITY_COLUMNS
        ):
            missing = [c for c in TSV_COLUMNS if c not in fields]
            raise LabelSetFileError(
                f"{path}: expected columns {TSV_COLUMNS} (then optionally {QUALITY_COLUMNS}), "
                f"found {list(fields)}" + (f"; missing {missing}" if missing else "")
            )
        return list(enumerate(reader, start=2))


def positive_rows(tsv_path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of the positives of a label-set file, in file order, as strings (without its
    text files: ``source`` says which text file ``index`` points into)."""
    return [row for _, row in _read_rows(tsv_path) if row["role"] == "pos"]


def positive_names(tsv_path: str | os.PathLike) -> list[str]:
    """Names of the positives of a label-set file, in file order (without its text files)."""
    return [row["name"] for row in positive_rows(tsv_path)]


def read_label_table(tsv_path: str | os.PathLike):
    """A label-set TSV as a pandas DataFrame of strings, with ``votes``, ``score`` and the
    quality columns parsed as numbers (for the report; :func:`read_label_set` is the checked
    reader). Names are kept verbatim: corpus words such as "nan" or "null" stay words."""
    import pandas as pd

    rows = [row for _, row in _read_rows(tsv_path)]
    columns = list(rows[0]) if rows else list(TSV_COLUMNS)
    frame = pd.DataFrame(rows, columns=columns, dtype=str)
    for col in ("votes", "score", *QUALITY_COLUMNS):
        if col in frame.columns:
            frame[col] = pd.to_numeric(frame[col].replace("", "nan"), errors="coerce")
    return frame


def label_texts(tsv_path: str | os.PathLike, corpus, classes=None, extra=None):
    """A label set and the text embeddings of its positives and negatives.

    ``corpus``, ``classes`` and ``extra`` are the :class:`clustermine.h5io.TextEmbeddings` of
    the corpus, of the ID class names and of the label set's extra text file (CSP's conjugated
    labels), None without them; returns ``(labels, positives, negatives)``.
    """
    from clustermine.h5io import TextEmbeddings

    labels = read_label_set(tsv_path, corpus.names, classes.names if classes else None,
                            extra.names if extra else None)  # fmt: skip
    pos = labels.positive_embeddings(corpus.embeddings, classes.embeddings if classes else None)
    neg = labels.negative_embeddings(corpus.embeddings, extra.embeddings if extra else None)
    return labels, TextEmbeddings(pos, labels.pos_names), TextEmbeddings(neg, labels.neg_names)
