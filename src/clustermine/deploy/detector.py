"""A detector ready to score new images: :func:`load_deployed_detector` and
:class:`DeployedDetector`.

It joins what the workflow made (the detector file: label texts, fitted arrays, calibration)
with the model that made the embeddings, rebuilt from the attributes the file records, so that
an image goes in and a score, a p-value and a decision come out (docs/deploy.md)::

    import clustermine
    det = clustermine.load_detector("results/demo-minilm/detectors/fmnist.clustermine.h5")
    out = det.predict(["a.png", "b.jpg"])
    out.scores, out.p_values, out.ood       # arrays, one entry per image

Every embedding reaches the detector's score through one check
(:meth:`DeployedDetector._score_rows`): a row with NaN or infinite values, or whose score is
not finite, gets an error instead of a score, as an unreadable image does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clustermine.deploy.bundle import read_bundle
from clustermine.deploy.inputs import ImageSource, open_source, source_name
from clustermine.deploy.modelspec import ModelSpec
from clustermine.detectors import load_detector
from clustermine.detectors.calibration import DEFAULT_ACCEPTANCE, Calibration, check_acceptance
from clustermine.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

NON_FINITE_EMBEDDING = "embedding has NaN or infinite values (a damaged model or embedding file)"
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


# Catalog needs of scores that read more of an image than its embedding.
IMAGE_FEATURE_NEEDS = frozenset({"local_features", "views"})


class DeployedDetector:
    """A fitted detector and its model; made by :func:`load_deployed_detector`.

    Scoring runs one call at a time (a lock): a detector that adapts at test time
    (``describe()["adapts_at_test_time"]``) carries its state from one call to the next, in
    the order of the calls, until :meth:`reset`.
    """

    def __init__(
        self,
        detector,
        model: ModelSpec,
        *,
        source: str,
        manifest: Mapping[str, Any] | None = None,
        version_differences: Mapping[str, Any] | None = None,
        device: str | None = None,
        batch_size: int = 256,
        workers: int = 0,
        precision: str = "auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        threshold: float | None = None,
        id_acceptance: float = DEFAULT_ACCEPTANCE,
    ) -> None:
        needs = sorted(detector.plugin().needs & IMAGE_FEATURE_NEEDS)
        if needs:
            raise ValueError(
                f"{source}: score {detector.name!r} reads the {' and '.join(needs)} of every "
                "image besides its embedding, which a deployed detector does not compute: "
                "score its images with the workflow (a dataset of the ID set's benchmarks), "
                "or deploy a score of the embedding alone"
            )
        self.detector = detector
        self.model_spec = model
        self.source = source
        self.manifest = dict(manifest or {})
        self.version_differences = dict(version_differences or {})
        self.device = device
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size, self.workers, self.precision = int(batch_size), int(workers), precision
        self.max_pixels = max_pixels
        self._loaded = None
        self._input = None  # how images become model input; with the model
        self._lock = threading.RLock()
        self._threshold: float | None = None
        self.id_acceptance = DEFAULT_ACCEPTANCE
        self.set_threshold(threshold, id_acceptance)

    # --- what it is ---------------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        return self.detector.meta

    @property
    def calibration(self) -> Calibration | None:
        return self.detector.calibration

    @property
    def stateful(self) -> bool:
        return self.detector.stateful

    @property
    def threshold(self) -> float | None:
        """Images scoring below it are flagged OOD: the given threshold, else the one that
        accepts ``id_acceptance`` of the held-out ID images; None without either."""
        if self._threshold is not None:
            return self._threshold
        if self.calibration is not None:
            return self.calibration.threshold(self.id_acceptance)
        return None

    def set_threshold(
        self, threshold: float | None = None, id_acceptance: float | None = None
    ) -> None:
        """An absolute ``threshold``, or the share of held-out ID images to accept."""
        if id_acceptance is not None:
            self.id_acceptance = check_acceptance(id_acceptance)
        if threshold is not None and not np.isfinite(float(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        self._threshold = None if threshold is None else float(threshold)
        if self.threshold is None:
            log.warning(
                "%s has no calibration (an older detector file, or an ID set without a test "
                "set): no p-values, and no OOD decisions unless a threshold is given",
                self.source,
            )

    def describe(self) -> dict[str, Any]:
        """Model, method, ID set, labels, threshold and calibration, as ``/info`` shows them."""
        det, meta = self.detector, self.detector.meta
        out = {
            "source": self.source,
            "bundle": bool(self.manifest),
            "method": meta.get("method"),
            "score": det.name,
            "params": det.params,
            "tau": det.tau,
            "idset": meta.get("idset"),
            "label_set": meta.get("labels"),
            "model": {"slug": meta.get("model"), **self.model_spec.describe(),
                      "logit_scale": det.logit_scale,
                      "embedding_dim": det.embedding_dim},  # fmt: skip
            "num_positives": len(det.text_pos.names),
            "num_negatives": len(det.text_neg.names),
            "positives": list(det.text_pos.names[:100]),
            "threshold": self.threshold,
            "threshold_from": (
                "given" if self._threshold is not None
                else "calibration" if self.calibration is not None else None
            ),  # fmt: skip
            "id_acceptance": self.id_acceptance,
            "calibration": (
                self.calibration.summary(self.id_acceptance) if self.calibration else None
            ),
            "adapts_at_test_time": self.stateful,
        }
        if self.stateful:
            out["state_note"] = (
                "scores depend on the images scored before, in call order; reset() returns "
                "to the fitted state"
            )
        if self.model_spec.random_weights:
            out["warning"] = "the model has random weights: its scores are meaningless"
        if self.version_differences:
            out["version_differences"] = self.version_differences
        return out

    def reset(self) -> None:
        """Back to the fitted state saved in the file: a detector that adapts at test time
        forgets the images it has seen (static detectors have nothing to forget)."""
        with self._lock:
            self.detector.reset()

    # --- the model ------------------------------------------------------------------------------

    @property
    def model(self):
        """The open_clip model (a ``clustermine.models.LoadedModel``), built on first use."""
        with self._lock:
            if self._loaded is None:
                t0 = time.perf_counter()
                loaded = self.model_spec.build(self.device)
                self._input = _ModelInput.of(loaded.preprocess)
                self._loaded = loaded
                log.info(
                    "built model %s on %s in %.1f s",
                    self.model_spec.arch,
                    self._loaded.device,
                    time.perf_counter() - t0,
                )
            return self._loaded

    @property
    def draft_size(self) -> tuple[int, int]:
        """Twice the model's input size, ``(width, height)``: with ``preprocess(...,
        draft=True)`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale where it stays at least this
        large."""
        self.model  # noqa: B018 - the input size comes with the model
        height, width = self._input.shape[-2:]
        return 2 * width, 2 * height

    def preprocess(self, source: ImageSource, draft: bool = False):
        """One image as the model's input tensor (raises for an unreadable image); with
        ``draft``, a large JPEG is decoded at a reduced scale (faster; the pixels differ a
        little from a full decoding)."""
        self.model  # noqa: B018 - the preprocessing comes with the model
        size = self.draft_size if draft else None
        return self._input.transform(open_source(source, self.max_pixels, size))

    def encode_pixels(self, pixels) -> np.ndarray:
        """Image embeddings [N, D] (float32, not normalised) of preprocessed images
        (:meth:`preprocess`, stacked)."""
        from clustermine.encode import encode_image_batches

        loaded = self.model
        step = self.batch_size
        batches = ((pixels[s : s + step],) for s in range(0, len(pixels), step))
        with self._lock:
            return encode_image_batches(loaded, batches, self.precision, self._input.on_device,
                                        dim=self.detector.embedding_dim or 0)  # fmt: skip

    def embed(
        self, images: Sequence[ImageSource], progress: bool = False
    ) -> tuple[np.ndarray, list[str]]:
        """Embeddings of ``images`` (paths, encoded bytes or PIL images) in batches, and one
        error text per image ("" where it was read); unreadable rows are zeros."""
        import torch

        from clustermine.deploy.inputs import ImageBatchData, collate
        from clustermine.encode import encode_image_batches

        loaded, sources = self.model, list(images)
        into = self._input
        data = ImageBatchData(sources, into.transform, into.shape, self.max_pixels, into.dtype)
        paths_only = all(isinstance(x, (str, os.PathLike)) for x in sources)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=self.batch_size,
            num_workers=self.workers if paths_only else 0,
            collate_fn=collate,
            pin_memory=loaded.device.type == "cuda",
        )
        bar = _progress(len(data), progress)
        errors: list[str] = []

        def batch_done(size: int, batch_errors: list[str]) -> None:
            errors.extend(batch_errors)
            bar.update(size)

        with self._lock:
            emb = encode_image_batches(loaded, loader, self.precision, into.on_device,
                                       on_batch=batch_done,
                                       dim=self.detector.embedding_dim or 0)  # fmt: skip
        bar.close()
        return emb, errors

    # --- scoring ------------------------------------------------------------------------------

    def score_embeddings(
        self,
        embeddings: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> np.ndarray:
        """Scores (float64, higher = more in-distribution) of image embeddings [N, D] made by
        the detector's model. ``attrs``: their model attributes (an embedding file's), checked
        against the detector's; ``source`` names them in messages. Raises
        :class:`UnscorableEmbeddings` naming the rows with NaN or infinite values (before
        scoring any) or scores (use :meth:`predict` for one error per row instead)."""
        embeddings = _rows(embeddings)
        _raise_for_errors(_check_finite(embeddings, [""] * len(embeddings)), source)
        scores, errors = self._score_rows(embeddings, [""] * len(embeddings), attrs, source)
        _raise_for_errors(errors, source)
        return scores

    def score_images(self, images: Sequence[ImageSource], progress: bool = False) -> np.ndarray:
        """Scores of images (paths, encoded bytes or PIL images); raises
        :class:`UnreadableImages` naming each image that could not be read, and
        :class:`UnscorableEmbeddings` for images whose embedding has NaN or infinite values
        (use :meth:`predict` to get the others' scores and one error per row instead)."""
        images = list(images)
        emb, errors = self.embed(images, progress)
        bad = [f"{source_name(images[i], i)}: {e}" for i, e in enumerate(errors) if e]
        if bad:
            raise UnreadableImages(
                f"{len(bad)} of {len(images)} images could not be read: " + "; ".join(bad[:10])
            )
        return self.score_embeddings(emb, source="the images' embeddings")

    def decide(self, scores: np.ndarray) -> tuple[np.ndarray | None, list[bool | None]]:
        """p-values (None without calibration) and OOD decisions (None without threshold)."""
        scores = np.asarray(scores, dtype=np.float64)
        p = self.calibration.p_values(scores) if self.calibration is not None else None
        t = self.threshold
        ood = [None if (t is None or np.isnan(s)) else bool(s < t) for s in scores]
        return p, ood

    def predict(
        self,
        images: Sequence[ImageSource] | None = None,
        *,
        embeddings: np.ndarray | None = None,
        attrs: Mapping[str, Any] | None = None,
        source: str | None = None,
        names: Sequence[str] | None = None,
        top_labels: bool = False,
        progress: bool = False,
    ) -> Predictions:
        """Scores, p-values and decisions of images, or of precomputed ``embeddings`` (with
        their ``attrs``, checked, and their ``source`` file for messages). An unreadable image,
        and an embedding with NaN or infinite values or score, gets an error in its row, never
        an exception. ``top_labels``: also the positive and negative label each image matches
        best (label-mining detectors)."""
        if (images is None) == (embeddings is None):
            raise ValueError("predict: give either images or embeddings")
        if images is not None:
            images = list(images)
            emb, errors = self.embed(images, progress)
            names = list(names) if names is not None else [
                source_name(x, i) for i, x in enumerate(images)
            ]  # fmt: skip
        else:
            emb = _rows(embeddings)
            errors = [""] * len(emb)
            names = list(names) if names is not None else [str(i) for i in range(len(emb))]
        if len(names) != len(emb):
            raise ValueError(f"predict: {len(names)} names for {len(emb)} images")
        scores, errors = self._score_rows(emb, errors, attrs, source)
        p, ood = self.decide(scores)
        out = Predictions(names, scores, errors, self.threshold, p, ood)
        if top_labels:
            ok = np.asarray([not e for e in errors], dtype=bool)
            out.top_positive, out.top_negative = self.top_labels(emb, ok)
        return out

    def _score_rows(
        self,
        embeddings: np.ndarray,
        errors: list[str],
        attrs: Mapping[str, Any] | None,
        source: str | None,
    ) -> tuple[np.ndarray, list[str]]:
        """The one way embeddings reach the detector's score: the scores of the rows without
        an error, NaN for the others; and the errors, now also of the rows with NaN or infinite
        values, or a score that is not finite."""
        errors = _check_finite(embeddings, errors)
        ok = np.asarray([not e for e in errors], dtype=bool)
        scores = np.full(len(embeddings), np.nan)
        with self._lock:
            if ok.any():
                scores[ok] = self.detector.score(embeddings[ok], attrs, source)
            elif attrs is not None:
                self.detector.check_model(attrs, source)
        for i in np.flatnonzero(ok & ~np.isfinite(scores)):
            errors[i], scores[i] = NON_FINITE_SCORE, np.nan
        return scores, errors

    def top_labels(
        self, embeddings: np.ndarray, ok: np.ndarray | None = None
    ) -> tuple[list[Label | None], list[Label | None] | None]:
        """The positive (and negative) label text nearest to each embedding, by cosine."""
        import torch

        from clustermine.h5io import normalize

        det = self.detector
        ok = np.ones(len(embeddings), bool) if ok is None else ok
        x = torch.as_tensor(normalize(np.asarray(embeddings, np.float32))).to(det.device)
        out = []
        for which, texts in (("pos", det.text_pos), ("neg", det.text_neg)):
            if not len(texts.names):
                out.append(None)
                continue
            t = det.texts_on_device(which)
            labels: list[Label | None] = []
            for s in range(0, len(x), 1024):
                best = (x[s : s + 1024] @ t.T).max(dim=1)
                labels += [
                    Label(texts.names[int(i)], float(v)) if ok[s + j] else None
                    for j, (v, i) in enumerate(zip(best.values.tolist(), best.indices.tolist()))
                ]
            out.append(labels)
        return out[0], out[1]


@dataclass(frozen=True)
class _ModelInput:
    """How images become the model's input: ``transform`` (PIL image to tensor, run where the
    images are decoded) and ``on_device`` (the rest, on a batch on the model's device), split
    as the workflow's encoder splits them (``clustermine.encode.split_preprocess``)."""

    transform: Any
    on_device: Any
    shape: tuple[int, ...]
    dtype: Any

    @classmethod
    def of(cls, preprocess) -> "_ModelInput":
        import torch

        from clustermine.encode import input_shape, split_preprocess

        split = split_preprocess(preprocess)
        transform, on_device = split if split else (preprocess, None)
        dtype = torch.uint8 if split else torch.float32
        return cls(transform, on_device, input_shape(transform), dtype)


def _rows(embeddings) -> np.ndarray:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"image embeddings must be [N, D], got shape {embeddings.shape}")
    return embeddings


def _check_finite(embeddings: np.ndarray, errors: list[str]) -> list[str]:
    """``errors``, with :data:`NON_FINITE_EMBEDDING` for each row that has none yet and holds a
    NaN or infinite value."""
    finite = np.isfinite(embeddings).all(axis=1) if embeddings.size else [True] * len(errors)
    return [e or ("" if good else NON_FINITE_EMBEDDING) for e, good in zip(errors, finite)]


def _raise_for_errors(errors: list[str], source: str | None) -> None:
    bad = [i for i, e in enumerate(errors) if e]
    if bad:
        rows = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
        raise UnscorableEmbeddings(
            f"{source or 'the embeddings'}: {len(bad)} of {len(errors)} embeddings have no "
            f"score: {errors[bad[0]]} (rows {rows}); predict() gives the others' scores"
        )


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=not enabled or None, leave=False)


def load_deployed_detector(
    path: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    weights_cache: str | os.PathLike | None = None,
    device: str | None = None,
    **options: Any,
) -> DeployedDetector:
    """A detector file (``results/{model}/detectors/{idset}.{method}.h5``) or a bundle folder
    (``clustermine export``) as a :class:`DeployedDetector`; ``clustermine.load_detector``.

    ``checkpoint``: the model's weights file, where the recorded one is not at hand.
    ``weights_cache``: the workflow's weight cache an open_clip tag is loaded from (default:
    ``resources/weights`` of the workflow's folder when there is one, else open_clip's own).
    ``device``: where the model and the scores run (default: the GPU when there is one).
    ``options``: ``batch_size``, ``workers``, ``precision``, ``max_pixels``, ``threshold``,
    ``id_acceptance`` (see :class:`DeployedDetector`).
    """
    path = Path(path)
    if path.is_dir():
        bundle = read_bundle(path, checkpoint=checkpoint, weights_cache=weights_cache,
                             device=device)  # fmt: skip
        return DeployedDetector(
            bundle.detector,
            bundle.model,
            source=str(path),
            manifest=bundle.manifest,
            version_differences=bundle.version_differences,
            device=device,
            **options,
        )
    detector = load_detector(path, device)
    spec = ModelSpec.of_detector(detector.meta, str(path), checkpoint=checkpoint,
                                 weights_cache=weights_cache)  # fmt: skip
    return DeployedDetector(detector, spec, source=str(path), device=device, **options)
