"""What a deployed detector returns: :class:`Predictions` (one row per image, with an error
instead of an exception for an image it cannot score), and the one check every image passes
before its score counts (:func:`check_finite`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clustermine.encode import ImageFeatures

NON_FINITE_EMBEDDING = (
    "embedding (or local features, or a view) has NaN or infinite values (a damaged model or "
    "embedding file)"
)
NON_FINITE_SCORE = "the detector's score of this embedding is NaN or infinite"


class UnreadableImages(ValueError):
    """Some images given to :meth:`DeployedDetector.score_images` could not be read."""


class UnscorableEmbeddings(ValueError):
    """Some embeddings given to :meth:`DeployedDetector.score_embeddings` (or made by
    :meth:`~DeployedDetector.score_images`) have NaN or infinite values, or scores."""


@dataclass
class Label:
    """The label text an image matches best, with its cosine similarity."""

    name: str
    cosine: float


@dataclass
class Predictions:
    """One entry per image, in the order given. ``scores`` is NaN and ``errors`` says why
    where an image could not be read or its embedding not scored; ``p_values`` is None without
    a calibration and ``ood`` None without a threshold (and None for rows with an error)."""

    names: list[str]
    scores: np.ndarray
    errors: list[str]
    threshold: float | None
    p_values: np.ndarray | None = None
    ood: list[bool | None] = field(default_factory=list)
    top_positive: list[Label | None] | None = None
    top_negative: list[Label | None] | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_errors(self) -> int:
        """Rows without a score: unreadable images, NaN or infinite embeddings or scores."""
        return sum(bool(e) for e in self.errors)

    @property
    def num_ood(self) -> int:
        return sum(bool(x) for x in self.ood)

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per image: ``path, score, p_value, ood, error`` (and the top
        positive and negative label where asked for); None where there is no value."""
        out = []
        for i, name in enumerate(self.names):
            ok = not self.errors[i]
            row = {
                "path": name,
                "score": float(self.scores[i]) if ok else None,
                "p_value": float(self.p_values[i]) if ok and self.p_values is not None else None,
                "ood": self.ood[i] if ok and self.ood else None,
                "error": self.errors[i] or None,
            }
            for key, labels in (("top_positive", self.top_positive),
                                ("top_negative", self.top_negative)):  # fmt: skip
                if labels is not None:
                    label = labels[i]
                    row[key] = None if label is None else {"name": label.name,
                                                           "cosine": label.cosine}  # fmt: skip
            out.append(row)
        return out


def check_finite(features: ImageFeatures, errors: list[str]) -> list[str]:
    """``errors``, with :data:`NON_FINITE_EMBEDDING` for each row that has none yet and holds a
    NaN or infinite value in its embedding, its local features or a view."""
    parts = [features.embeddings, features.local, *(features.views or ())]
    finite = np.ones(len(errors), dtype=bool)
    for part in parts:
        if part is not None and len(part) == len(errors) and part.size:
            finite &= np.isfinite(part.reshape(len(part), -1)).all(axis=1)
    return [e or ("" if good else NON_FINITE_EMBEDDING) for e, good in zip(errors, finite)]


def raise_for_errors(errors: list[str], source: str | None) -> None:
    bad = [i for i, e in enumerate(errors) if e]
    if bad:
        rows = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
        raise UnscorableEmbeddings(
            f"{source or 'the embeddings'}: {len(bad)} of {len(errors)} embeddings have no "
            f"score: {errors[bad[0]]} (rows {rows}); predict() gives the others' scores"
        )
