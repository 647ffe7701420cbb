"""What miners read: the corpus, the ID class names, and (for image-based miners) the
zero-shot labels and cluster assignments of the ID-train images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from clustermine.compute import DEFAULT_BUDGET_BYTES
from clustermine.corpus import normalize_name
from clustermine.h5io import TextEmbeddings, normalize
from clustermine.labelsets import LabelSet
from clustermine.zeroshot import zero_shot_top1

log = logging.getLogger(__name__)


class MinerConfigError(ValueError):
    """A label set asks for something its ID set or parameters cannot give."""


@dataclass
class MiningInputs:
    """``corpus_emb`` rows must be the text embeddings of ``corpus_names`` (normalised here);
    ``class_emb``, when given, those of ``class_names`` (the ID classes, in label order).

    ``top1`` may be given precomputed (the zero-shot rule caches it); otherwise it is computed
    from ``image_emb`` on first use. ``sources`` names the files behind each input, for errors.
    """

    corpus_names: list[str]
    corpus_emb: np.ndarray
    class_names: list[str] | None = None
    class_emb: np.ndarray | None = None
    corpus_synsets: list[str] | None = None
    class_synsets: list[str] | None = None
    image_emb: np.ndarray | None = None
    top1: np.ndarray | None = None
    assignments: np.ndarray | None = None
    budget_bytes: int = DEFAULT_BUDGET_BYTES
    device: str | None = None
    seed: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    # Part of speech of every corpus name (n, a, class) and the norm of its raw text feature.
    corpus_pos: list[str] | None = None
    corpus_norms: np.ndarray | None = None
    # The density of every corpus name's raw text feature, when cached (debiased mining).
    corpus_density: np.ndarray | None = None
    # The attributes of the density file it came from (how it was computed), when cached.
    corpus_density_attrs: dict | None = None
    # The label sets the label set's keys of role ``label_set`` name, by key (e.g.
    # ``positives_of``: a label set whose positives a miner takes as its own).
    label_sets: dict[str, LabelSet] = field(default_factory=dict)
    # The paths of the user files the label set's keys of role ``file`` name, by key (e.g.
    # ``negatives_file``: the names a miner takes as negatives).
    files: dict[str, str] = field(default_factory=dict)
    # Labels beyond the corpus with their own text embeddings (need ``conjugated_labels``:
    # CSP's "<adjective> <superclass word>" labels), when the miner reads them.
    conjugated: TextEmbeddings | None = None

    @property
    def positive_set(self) -> LabelSet | None:
        """The label set named by ``positives_of`` (debiased mining), None without one."""
        return self.label_sets.get("positives_of")

    @positive_set.setter
    def positive_set(self, value: LabelSet | None) -> None:
        if value is None:
            self.label_sets.pop("positives_of", None)
        else:
            self.label_sets["positives_of"] = value

    def __post_init__(self) -> None:
        self.corpus_emb = normalize(self.corpus_emb)
        if len(self.corpus_emb) != len(self.corpus_names):
            raise MinerConfigError(
                f"corpus has {len(self.corpus_names)} names but {len(self.corpus_emb)} embeddings"
            )
        if self.top1 is not None:
            self.top1 = np.asarray(self.top1, dtype=np.int64).reshape(-1)
        if self.assignments is not None:
            self.assignments = np.asarray(self.assignments, dtype=np.int64).reshape(-1)

    def _where(self, key: str) -> str:
        return f" ({self.sources[key]})" if key in self.sources else ""

    def text_norms(self) -> np.ndarray:
        """The raw norm of every corpus name's text feature (text files of format 2)."""
        if self.corpus_norms is None:
            raise MinerConfigError(
                f"this miner needs the raw norms of the corpus text features, which the text "
                f"file{self._where('corpus')} does not hold (it predates them): delete it so "
                "that it is re-encoded"
            )
        norms = np.asarray(self.corpus_norms, dtype=np.float64).reshape(-1)
        if len(norms) != len(self.corpus_names):
            raise MinerConfigError(f"{len(norms)} raw norms for {len(self.corpus_names)} names")
        return norms

    def image_embeddings(self) -> np.ndarray:
        if self.image_emb is None:
            raise MinerConfigError("this miner needs the ID-train image embeddings")
        return np.asarray(self.image_emb)

    def zero_shot_top1(self) -> np.ndarray:
        if self.top1 is None:
            if self.image_emb is None:
                raise MinerConfigError(
                    "this miner needs the ID-train image embeddings or their zero-shot labels"
                )
            log.info(
                "zero-shot top-1 of %d images over %d names",
                len(self.image_emb),
                len(self.corpus_names),
            )
            self.top1 = zero_shot_top1(
                self.image_emb, self.corpus_emb, self.budget_bytes, self.device
            )
        if len(self.top1) and (self.top1.min() < 0 or self.top1.max() >= len(self.corpus_names)):
            raise MinerConfigError(
                f"zero-shot labels{self._where('top1')} index outside the corpus of "
                f"{len(self.corpus_names)} names: they were computed over another corpus"
            )
        return self.top1

    def cluster_assignments(self) -> np.ndarray:
        if self.assignments is None:
            raise MinerConfigError("this miner needs cluster assignments of the ID-train images")
        # Compared with what is at hand: the zero-shot labels, else the images themselves.
        if self.top1 is not None or self.image_emb is None:
            other, where = len(self.zero_shot_top1()), self._where("top1")
        else:
            other, where = len(self.image_emb), self._where("images")
        if len(self.assignments) != other:
            raise MinerConfigError(
                f"{len(self.assignments)} cluster assignments{self._where('assignments')} for "
                f"{other} ID-train images{where}: they come from different datasets"
            )
        return self.assignments

    def ground_truth(self, on_missing: str = "error") -> "GroundTruth":
        """Y_GT: the ID class names, one per distinct normalised name.

        With class-name embeddings (``class_emb``) Y_GT is taken from them, whatever the
        corpus holds, and corpus rows with a Y_GT name are only recorded (miners keep them out
        of the negatives). Without, Y_GT is the corpus rows matching the class names;
        ``on_missing="error"`` refuses a corpus lacking a class, ``"drop"`` leaves such
        classes out of Y_GT and logs them.
        """
        if not self.class_names:
            raise MinerConfigError(
                "this label set needs the ID class names (Y_GT), but the ID-train embeddings"
                f"{self._where('class_names')} carry no class_names. Use a label-free miner "
                "(posmine, clustermine) or give the dataset its class names."
            )
        if on_missing not in ("error", "drop"):
            raise MinerConfigError(f"missing_gt must be 'error' or 'drop', got {on_missing!r}")
        lookup: dict[str, int] = {}
        for i, name in enumerate(self.corpus_names):
            lookup.setdefault(normalize_name(name), i)
        first_class: dict[str, int] = {}
        for c, name in enumerate(self.class_names):
            first_class.setdefault(normalize_name(name), c)
        classes = np.asarray(sorted(first_class.values()), dtype=np.int64)
        matches = [lookup.get(normalize_name(self.class_names[c])) for c in classes]
        corpus_rows = np.asarray([i for i in matches if i is not None], dtype=np.int64)
        missing = [self.class_names[c] for c, i in zip(classes, matches) if i is None]
        if len(classes) < len(self.class_names):
            log.info("Y_GT: %d class names, %d distinct", len(self.class_names), len(classes))
        corpus_syn = self.corpus_synsets or [None] * len(self.corpus_names)
        if self.class_emb is not None:
            if len(self.class_emb) != len(self.class_names):
                raise MinerConfigError(
                    f"{len(self.class_emb)} class-name embeddings{self._where('class_emb')} "
                    f"for {len(self.class_names)} ID classes"
                )
            class_syn = self.class_synsets or [None] * len(self.class_names)
            synsets = [
                class_syn[c] or (corpus_syn[i] if i is not None else None)
                for c, i in zip(classes, matches)
            ]
            if missing:
                log.info("Y_GT: %d class names are not in the corpus: %s", len(missing), missing)
            return GroundTruth(
                [self.class_names[c] for c in classes],
                normalize(self.class_emb[classes]),
                classes,
                corpus_rows,
                missing,
                synsets,
            )
        if missing and on_missing == "error":
            shown = ", ".join(repr(m) for m in missing[:10])
            raise MinerConfigError(
                f"{len(missing)} of {len(classes)} ID class names are not in the corpus"
                f"{self._where('corpus')}: {shown}{' ...' if len(missing) > 10 else ''}. Give "
                "mining the class-name embeddings, add the class names to the corpus, or set "
                "missing_gt: drop in the label set to leave them out of Y_GT."
            )
        if missing:
            log.warning("Y_GT: dropped %d class names not in the corpus: %s", len(missing), missing)
        if not len(corpus_rows):
            raise MinerConfigError("no ID class name is in the corpus: Y_GT would be empty")
        return GroundTruth(
            [self.corpus_names[i] for i in corpus_rows],
            self.corpus_emb[corpus_rows],
            np.empty(0, np.int64),
            corpus_rows,
            missing,
            [corpus_syn[i] for i in corpus_rows],
        )


@dataclass
class GroundTruth:
    """Y_GT as miners use it. ``class_rows`` index the class-name file (empty when Y_GT is
    taken from the corpus); ``corpus_rows`` are the corpus rows bearing a Y_GT name."""

    names: list[str]
    embeddings: np.ndarray
    class_rows: np.ndarray
    corpus_rows: np.ndarray
    missing: list[str]
    synsets: list[str | None]

    @property
    def from_classes(self) -> bool:
        return bool(len(self.class_rows))

    def positives(self) -> dict[str, np.ndarray]:
        """``LabelSet`` keyword arguments that make Y_GT the positives."""
        if self.from_classes:
            return {"positives": np.empty(0, np.int64), "class_positives": self.class_rows}
        return {"positives": self.corpus_rows, "class_positives": None}
