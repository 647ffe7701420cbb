"""The interface every OOD score implements, and its HDF5 file.

A detector is fitted once (from ID-train image embeddings and the text embeddings of its
positive and negative labels) and then scores batches of new image embeddings; higher scores
mean "more in-distribution". ``save`` writes one HDF5 file holding everything needed to score
new images: label names and their text embeddings, τ, fitted arrays, parameters and the model
attributes.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar, Mapping, Sequence

import h5py
import numpy as np
import torch

from clustermine import catalog
from clustermine.detectors.calibration import Calibration
from clustermine.atomic import atomic_path
from clustermine.h5io import (
    MODEL_KEYS,
    STR,
    EmbeddingFileError,
    TextEmbeddings,
    normalize,
    read_attrs,
    write_attrs,
)
from clustermine.compute import DEFAULT_BUDGET_BYTES, pick_device

log = logging.getLogger(__name__)

# 2: an optional /calibration group (the sorted scores of a held-out ID set).
FORMAT_VERSION = 2


class DetectorConfigError(ValueError):
    """A method's parameters or label set do not fit its score."""


class DetectorFileError(EmbeddingFileError):
    """A detector file that cannot be read: missing, truncated, junk, or of a newer format."""


def empty_texts(dim: int = 0) -> TextEmbeddings:
    return TextEmbeddings(np.zeros((0, dim), np.float32), [])


class Detector:
    """Subclasses set ``name`` (the score's name in :mod:`clustermine.catalog.scores`, which
    declares its parameters and what it needs) and implement ``_fit``/``_score``.

    ``state`` holds the fitted numpy arrays (saved under ``/state``); everything else a score
    needs is in ``params``, ``logit_scale`` and the label texts.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        text_pos: TextEmbeddings | None,
        text_neg: TextEmbeddings | None,
        logit_scale: float,
        params: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.params = self.resolve_params(params)
        self.text_pos = _unit_texts(text_pos)
        self.text_neg = _unit_texts(text_neg)
        self.logit_scale = float(logit_scale)
        if not np.isfinite(self.logit_scale) or self.logit_scale <= 0:
            raise DetectorConfigError(f"logit_scale must be a positive number, got {logit_scale}")
        self.meta = dict(meta or {})
        self.state: dict[str, np.ndarray] = {}
        self.fit_stats: dict[str, Any] = {}
        # What the last call of ``score`` reports about itself (e.g. clamped terms).
        self.score_stats: dict[str, Any] = {}
        self.calibration: Calibration | None = None
        self.path: str | None = None  # the file it was loaded from
        self.device = pick_device(None)
        self.budget_bytes = DEFAULT_BUDGET_BYTES
        self._device_texts: dict[str, torch.Tensor] = {}
        self._check_labels()

    @classmethod
    def plugin(cls) -> catalog.Plugin:
        return catalog.score(cls.name)

    @classmethod
    def resolve_params(cls, params: Mapping[str, Any] | None) -> dict[str, Any]:
        try:
            return cls.plugin().resolve(params)
        except catalog.CatalogError as err:
            raise DetectorConfigError(str(err)) from err

    @property
    def stateful(self) -> bool:
        """Whether the score adapts at test time (catalog need ``stream``): each call of
        :meth:`score` then continues from the state the previous calls left."""
        return self.plugin().stateful

    @property
    def needs_positives(self) -> bool:
        return self.plugin().has("positives")

    @property
    def needs_negatives(self) -> bool:
        return self.plugin().has("negatives")

    def _check_labels(self) -> None:
        if self.needs_positives and not len(self.text_pos.names):
            raise DetectorConfigError(
                f"score {self.name!r} needs positive labels: give the method a label set "
                "(methods.<slug>.labels)"
            )
        if self.needs_negatives and not len(self.text_neg.names):
            raise DetectorConfigError(
                f"score {self.name!r} needs negative labels, but the label set has none "
                "(set its negatives to complement or dissimilar)"
            )
        dims = {t.embeddings.shape[1] for t in (self.text_pos, self.text_neg) if len(t.names)}
        if len(dims) > 1:
            raise DetectorConfigError(f"positive and negative text dimensions differ: {dims}")

    def set_runtime(
        self, device: str | torch.device | None = None, budget_bytes: int | None = None
    ) -> "Detector":
        """Where and in how much memory scores are computed; never changes the scores' meaning."""
        self.device = pick_device(device)
        if budget_bytes is not None:
            if budget_bytes <= 0:
                raise DetectorConfigError(f"memory budget must be positive, got {budget_bytes}")
            self.budget_bytes = int(budget_bytes)
        self._device_texts.clear()
        return self

    @property
    def tau(self) -> float | None:
        """Temperature of softmax-type scores over label texts; ``None`` where unused."""
        return None

    @classmethod
    def fit(
        cls,
        train_image_emb: np.ndarray | None,
        text_pos: TextEmbeddings | None,
        text_neg: TextEmbeddings | None,
        logit_scale: float,
        params: Mapping[str, Any] | None = None,
        train_labels: np.ndarray | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        budget_bytes: int | None = None,
    ) -> "Detector":
        det = cls(text_pos, text_neg, logit_scale, params, meta)
        det.set_runtime(device, budget_bytes)
        # Raw embeddings: each score normalises them in the precision it needs.
        x = None if train_image_emb is None else np.asarray(train_image_emb)
        det._fit(x, None if train_labels is None else np.asarray(train_labels, np.int64))
        det._fitted_state = _copy_state(det.state)
        return det

    def _fit(self, train: np.ndarray | None, labels: np.ndarray | None) -> None:
        """Post-hoc scores over label texts need no training data."""

    # --- test-time state (stateful scores) --------------------------------------------------

    def reset(self) -> "Detector":
        """Back to the state right after fitting (or as saved): a stateful score forgets the
        test images it has seen. Static scores have nothing to forget."""
        if self.stateful:
            self.reset_state(getattr(self, "_fitted_state", self.state))
        return self

    def reset_state(self, fitted: dict) -> None:
        self.state = _copy_state(fitted)

    def sync_state(self) -> None:
        """Bring state kept elsewhere (on the compute device) back into ``state``."""

    def warn(self, message: str) -> None:
        """A problem that does not stop fitting: logged and recorded in ``fit_stats``."""
        log.warning("%s: %s", self.name, message)
        self.fit_stats.setdefault("warnings", []).append(message)

    def score(
        self,
        image_emb: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
        source: str | os.PathLike | None = None,
        *,
        local: np.ndarray | None = None,
        views: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """float64 scores [N], higher = more in-distribution.

        ``attrs``: the model attributes of the embeddings (an embedding file's attributes);
        when given they must name the model the detector was fitted with (see
        :meth:`check_model`), since embeddings of another model of the same width would be
        scored without any error. ``source`` names them in messages.

        A score that needs them (catalog needs ``local_features``, ``views``) also gets the
        local patch features of the same images (``local`` [N, P, D]) or the embeddings of
        each of its corrupted views (``views``, a list of [N, D] in the order of its views).
        """
        if attrs is not None:
            self.check_model(attrs, source)
        image_emb = self._checked(image_emb, "image embeddings", 2)
        extra: dict[str, Any] = {}
        if self.plugin().has("local_features"):
            if local is None:
                raise DetectorConfigError(
                    f"score {self.name!r} needs the local patch features of the images "
                    "(encoded with features: local) beside their embeddings"
                )
            extra["local"] = self._checked(local, "local patch features", 3, len(image_emb))
        if self.plugin().has("views"):
            if views is None:
                raise DetectorConfigError(
                    f"score {self.name!r} needs the embeddings of the corrupted views of the "
                    "images beside their embeddings"
                )
            extra["views"] = [
                self._checked(v, "view embeddings", 2, len(image_emb)) for v in views
            ]
        if not len(image_emb):
            return np.zeros(0)
        return np.asarray(self._score(image_emb, **extra), dtype=np.float64)

    def _checked(self, emb, what: str, ndim: int, rows: int | None = None) -> np.ndarray:
        emb = np.ascontiguousarray(emb)  # a reversed or strided view becomes a tensor too
        if emb.ndim != ndim:
            shape = "[N, D]" if ndim == 2 else "[N, P, D]"
            raise ValueError(f"{what} must be {shape}, got shape {emb.shape}")
        if rows is not None and len(emb) != rows:
            raise EmbeddingFileError(
                f"{what}: {len(emb)} rows for {rows} images; they must be of the same images"
            )
        dim = self.embedding_dim
        if dim is not None and emb.shape[-1] != dim:
            raise EmbeddingFileError(
                f"{what} have dimension {emb.shape[-1]} but detector "
                f"{self.name!r} was fitted on dimension {dim}: they come from different models"
            )
        return emb

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check_model(
        self, attrs: Mapping[str, Any], source: str | os.PathLike | None = None
    ) -> None:
        """Refuse embeddings whose model attributes (``model_arch``, ``model_pretrained``)
        differ from the ones this detector was fitted with. Where either side does not
        record an attribute it cannot be compared, which is logged."""
        source = source or "the embeddings"
        mine = self.path or f"detector {self.name!r}"
        for key in MODEL_KEYS:
            ours, theirs = self.meta.get(key), attrs.get(key)
            if ours in (None, "none") or theirs in (None, "none"):
                log.warning("%s: cannot check %s against %s: not recorded", source, key, mine)
                continue
            if str(ours) != str(theirs):
                raise EmbeddingFileError(
                    f"model mismatch: {source} has {key}={theirs!r} but {mine} was fitted on "
                    f"embeddings with {key}={ours!r}. Its scores on them would be meaningless "
                    "(the dimensions may well agree); encode the images with the detector's "
                    "model, or use a detector fitted for theirs."
                )

    def calibrate(
        self, scores: np.ndarray, dataset: str, attrs: Mapping[str, Any] | None = None
    ) -> Calibration:
        """Store the scores of a held-out ID set (``dataset``), from which come the
        threshold and p-values of new images (:mod:`clustermine.detectors.calibration`)."""
        self.calibration = Calibration(scores, dataset, dict(attrs or {}))
        return self.calibration

    @property
    def embedding_dim(self) -> int | None:
        for t in (self.text_pos, self.text_neg):
            if len(t.names):
                return int(t.embeddings.shape[1])
        return None

    def texts_on_device(self, which: str) -> torch.Tensor:
        """Unit text rows (``"pos"`` or ``"neg"``) on the compute device; on the CPU the
        tensor shares memory with the numpy array."""
        if which not in self._device_texts:
            texts = {"pos": self.text_pos, "neg": self.text_neg}[which]
            emb = np.ascontiguousarray(texts.embeddings, dtype=np.float32)
            self._device_texts[which] = torch.as_tensor(emb).to(self.device)
        return self._device_texts[which]

    # --- file -----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        self.sync_state()
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for group, texts in (("pos", self.text_pos), ("neg", self.text_neg)):
                g = f.create_group(group)
                g.create_dataset("names", data=np.asarray(texts.names, dtype=object), dtype=STR)
                g.create_dataset("embeddings", data=texts.embeddings.astype(np.float32))
            st = f.create_group("state")
            for key, value in self.state.items():
                value = np.asarray(value)
                # Large state (a test-time memory, mostly empty after fitting) compresses well.
                big = value.size > 2**20
                st.create_dataset(key, data=value, compression="gzip" if big else None,
                                  compression_opts=1 if big else None)  # fmt: skip
            if self.calibration is not None:
                cal = f.create_group("calibration")
                cal.create_dataset("scores", data=self.calibration.scores)
                write_attrs(cal, {**self.calibration.attrs, "dataset": self.calibration.dataset})
            write_attrs(
                f,
                {
                    **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float))},
                    "kind": "detector",
                    "format_version": FORMAT_VERSION,
                    "detector": self.name,
                    "params": self.params,
                    "tau": self.tau,
                    "logit_scale": self.logit_scale,
                    "meta": self.meta,
                    "fit_stats": self.fit_stats,
                },
            )

    @classmethod
    def _from_file(cls, f: h5py.File, path: str | os.PathLike) -> "Detector":
        attrs = read_attrs(f)
        texts = read_texts(f)
        params = attrs.get("params", {})
        if not isinstance(params, dict):
            raise EmbeddingFileError(f"{path}: detector parameters are not a JSON object")
        det = cls(texts["pos"], texts["neg"], attrs["logit_scale"], params, attrs.get("meta"))
        # The stored rows are already unit length; normalising again could move the last bit.
        det.text_pos, det.text_neg = texts["pos"], texts["neg"]
        det.state = {k: f["state"][k][()] for k in f["state"]}
        det._fitted_state = _copy_state(det.state)
        if "calibration" in f:
            cal_attrs = read_attrs(f["calibration"])
            det.calibration = Calibration(
                f["calibration"]["scores"][()], str(cal_attrs.pop("dataset", "")), cal_attrs
            )
        det.path = str(path)
        det.fit_stats = attrs.get("fit_stats") if isinstance(attrs.get("fit_stats"), dict) else {}
        return det

    def describe(self) -> dict[str, Any]:
        """What an output file should record about this detector."""
        return {
            "score": self.name,
            "params": self.params,
            "tau": self.tau,
            "logit_scale": self.logit_scale,
            "n_pos": len(self.text_pos.names),
            "n_neg": len(self.text_neg.names),
        }


def read_texts(f: h5py.File, groups: Sequence[str] = ("pos", "neg")) -> dict[str, TextEmbeddings]:
    """The label texts (unit rows) of an open detector file: ``pos``, ``neg`` or both."""
    texts = {}
    for group in groups:
        g = f[group]
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in g["names"][()]]
        texts[group] = TextEmbeddings(g["embeddings"][()].astype(np.float32, copy=False), names)
    return texts


def _copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: np.array(v, copy=True) for k, v in state.items()}


def _unit_texts(texts: TextEmbeddings | None) -> TextEmbeddings:
    if texts is None:
        return empty_texts()
    emb = np.asarray(texts.embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(texts.names):
        raise DetectorConfigError(
            f"label texts: {len(texts.names)} names but embeddings of shape {emb.shape}"
        )
    return TextEmbeddings(normalize(emb) if len(emb) else emb, list(texts.names))
