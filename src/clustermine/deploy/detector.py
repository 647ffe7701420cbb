"""A detector ready to score new images: :func:`load_deployed_detector` and
:class:`DeployedDetector`.

It joins what the workflow made (the detector file: label texts, fitted arrays, calibration)
with the model that made the embeddings, rebuilt from the attributes the file records, so that
an image goes in and a score, a p-value and a decision come out (docs/deploy.md)::

    import clustermine
    det = clustermine.load_detector("results/demo-minilm/detectors/fmnist.clustermine.h5")
    out = det.predict(["a.png", "b.jpg"])
    out.scores, out.p_values, out.ood       # arrays, one entry per image

A score that reads more of an image than its embedding (GL-MCM's local patch features,
CoVer's corrupted views) gets them from the same encoding, made as the workflow makes them.
Every image reaches the detector's score through one check
(:meth:`DeployedDetector._score_rows`): a row with NaN or infinite values, or whose score is
not finite, gets an error instead of a score, as an unreadable image does.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clustermine.deploy.bundle import read_bundle
from clustermine.deploy.encoder import ImageEncoder
from clustermine.deploy.inputs import ImageSource, source_name
from clustermine.deploy.predictions import (
    NON_FINITE_SCORE,
    Label,
    Predictions,
    UnreadableImages,
    UnscorableEmbeddings,
    check_finite,
    raise_for_errors,
)
from clustermine.deploy.modelspec import ModelSpec
from clustermine.detectors import load_detector
from clustermine.encode import ImageFeatures
from clustermine.detectors.calibration import DEFAULT_ACCEPTANCE, Calibration, check_acceptance
from clustermine.drift import DEFAULT_LEVEL, DEFAULT_WINDOW, DriftMonitor
from clustermine.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

__all__ = ["DeployedDetector", "Label", "Predictions", "UnreadableImages",
           "UnscorableEmbeddings", "load_deployed_detector"]  # fmt: skip

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
        drift_window: int = DEFAULT_WINDOW,
        drift_level: float = DEFAULT_LEVEL,
    ) -> None:
        plugin = detector.plugin()
        views = tuple(getattr(detector, "views", ())) if plugin.has("views") else ()
        if views and "view_seed" not in detector.meta:
            raise ValueError(
                f"{source}: score {detector.name!r} averages over corrupted views, but the file "
                "does not record the seed its views were made with (a detector fitted without "
                "a calibration set): refit it on an ID set with a test set"
            )
        self.detector = detector
        self.model_spec = model
        self.source = source
        self.manifest = dict(manifest or {})
        self.version_differences = dict(version_differences or {})
        self.device = device
        self._lock = threading.RLock()
        self.encoder = ImageEncoder(
            model, source=source, dim=detector.embedding_dim or 0,
            local=plugin.has("local_features"), views=views,
            view_seed=int(detector.meta.get("view_seed", 0)), device=device,
            storage=str(detector.meta.get("embedding_storage", "float32")),
            batch_size=batch_size, workers=workers, precision=precision, max_pixels=max_pixels,
            lock=self._lock,
        )  # fmt: skip
        self._threshold: float | None = None
        self.id_acceptance = DEFAULT_ACCEPTANCE
        self.drift: DriftMonitor | None = None
        self._drift_settings = (int(drift_window), float(drift_level))
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
        # Drift is measured against the calibration at the threshold in force: a new
        # threshold starts a new monitor.
        if self.calibration is not None and self.threshold is not None:
            self.drift = DriftMonitor(self.calibration.scores, self.threshold,
                                      *self._drift_settings)  # fmt: skip
        else:
            self.drift = None
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
            "drift": (
                {"window": self.drift.window, "level": self.drift.level}
                if self.drift is not None else None
            ),
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
        return self.encoder.model

    @property
    def max_pixels(self) -> int | None:
        """Images with more pixels are refused (None: no limit)."""
        return self.encoder.max_pixels

    @max_pixels.setter
    def max_pixels(self, value: int | None) -> None:
        self.encoder.max_pixels = value

    @property
    def draft_size(self) -> tuple[int, int]:
        """Twice the model's input size, ``(width, height)``: with ``preprocess(...,
        draft=True)`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale where it stays at least this
        large."""
        return self.encoder.draft_size

    def preprocess(self, source: ImageSource, draft: bool = False):
        """One image as the model's input tensor (raises for an unreadable image); with
        ``draft``, a large JPEG is decoded at a reduced scale (faster; the pixels differ a
        little from a full decoding)."""
        return self.encoder.preprocess(source, draft)

    def encode_pixels(self, pixels):
        """What the score reads of preprocessed images (:meth:`preprocess`, stacked): a
        :class:`clustermine.encode.ImageFeatures` (embeddings [N, D], float32, not normalised;
        local patch features and view embeddings where the score reads them)."""
        return self.encoder.encode_pixels(pixels)

    def encode(self, images: Sequence[ImageSource], progress: bool = False):
        """What the score reads of ``images`` (paths, encoded bytes or PIL images), as
        :meth:`encode_pixels`, and one error text per image ("" where it was read); the rows
        of unreadable images are zeros."""
        bar = _progress(len(images), progress)
        out = self.encoder.encode(images, on_batch=bar.update)
        bar.close()
        return out

    def embed(
        self, images: Sequence[ImageSource], progress: bool = False
    ) -> tuple[np.ndarray, list[str]]:
        """Embeddings [N, D] of ``images`` (paths, encoded bytes or PIL images) in batches,
        and one error text per image ("" where it was read); unreadable rows are zeros."""
        images = list(images)
        bar = _progress(len(images), progress)
        features, errors = self.encoder.encode(images, features=False, on_batch=bar.update)
        bar.close()
        return features.embeddings, errors

    # --- scoring ------------------------------------------------------------------------------

    def score_embeddings(
        self,
        embeddings: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
        source: str | None = None,
        *,
        local: np.ndarray | None = None,
        views: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Scores (float64, higher = more in-distribution) of image embeddings [N, D] made by
        the detector's model; a score that reads them also gets the images' local patch
        features (``local`` [N, P, D]) or the embeddings of its views (``views``, [N, D] each,
        in the order of ``describe()["params"]["views"]``). ``attrs``: their model attributes
        (an embedding file's), checked against the detector's; ``source`` names them in
        messages. Raises :class:`UnscorableEmbeddings` naming the rows with NaN or infinite
        values (before scoring any) or scores (use :meth:`predict` for one error per row)."""
        features = self._features(embeddings, local, views)
        none = [""] * len(features.embeddings)
        raise_for_errors(check_finite(features, none), source)
        scores, errors = self._score_rows(features, none, attrs, source)
        raise_for_errors(errors, source)
        return scores

    def score_images(self, images: Sequence[ImageSource], progress: bool = False) -> np.ndarray:
        """Scores of images (paths, encoded bytes or PIL images); raises
        :class:`UnreadableImages` naming each image that could not be read, and
        :class:`UnscorableEmbeddings` for images whose embedding has NaN or infinite values
        (use :meth:`predict` to get the others' scores and one error per row instead)."""
        images = list(images)
        features, errors = self.encode(images, progress)
        bad = [f"{source_name(images[i], i)}: {e}" for i, e in enumerate(errors) if e]
        if bad:
            raise UnreadableImages(
                f"{len(bad)} of {len(images)} images could not be read: " + "; ".join(bad[:10])
            )
        return self.score_embeddings(features.embeddings, source="the images' embeddings",
                                     local=features.local, views=features.views)  # fmt: skip

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
        local: np.ndarray | None = None,
        views: Sequence[np.ndarray] | None = None,
        attrs: Mapping[str, Any] | None = None,
        source: str | None = None,
        names: Sequence[str] | None = None,
        top_labels: bool = False,
        progress: bool = False,
    ) -> Predictions:
        """Scores, p-values and decisions of images, or of precomputed ``embeddings`` (with
        ``local`` and ``views`` where the score reads them, as :meth:`score_embeddings`; with
        their ``attrs``, checked, and their ``source`` file for messages). An unreadable image,
        and an embedding with NaN or infinite values or score, gets an error in its row, never
        an exception. ``top_labels``: also the positive and negative label each image matches
        best (label-mining detectors)."""
        if (images is None) == (embeddings is None):
            raise ValueError("predict: give either images or embeddings")
        if images is not None:
            images = list(images)
            features, errors = self.encode(images, progress)
            names = list(names) if names is not None else [
                source_name(x, i) for i, x in enumerate(images)
            ]  # fmt: skip
        else:
            features = self._features(embeddings, local, views)
            errors = [""] * len(features.embeddings)
            names = list(names) if names is not None else [str(i) for i in range(len(errors))]
        if len(names) != len(errors):
            raise ValueError(f"predict: {len(names)} names for {len(errors)} images")
        scores, errors = self._score_rows(features, errors, attrs, source)
        p, ood = self.decide(scores)
        out = Predictions(names, scores, errors, self.threshold, p, ood)
        if top_labels:
            ok = np.asarray([not e for e in errors], dtype=bool)
            out.top_positive, out.top_negative = self.top_labels(features.embeddings, ok)
        return out

    def _features(self, embeddings, local, views) -> ImageFeatures:
        """Given embeddings, local features and views as the score reads them; a clear error
        where the score needs one that is not given."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2:
            raise ValueError(f"image embeddings must be [N, D], got shape {embeddings.shape}")
        enc = self.encoder
        if (enc.local and local is None) or (enc.views and views is None):
            raise ValueError(
                f"score {self.detector.name!r} also reads the "
                f"{' and the '.join(enc.extra_features)} of the images: give them as local= "
                "and views=, or give the images"
            )
        return ImageFeatures(
            embeddings,
            np.asarray(local) if enc.local else None,
            [np.asarray(v) for v in views] if enc.views else None,
        )

    def _score_rows(
        self,
        features: ImageFeatures,
        errors: list[str],
        attrs: Mapping[str, Any] | None,
        source: str | None,
    ) -> tuple[np.ndarray, list[str]]:
        """The one way images reach the detector's score: the scores of the rows without an
        error, NaN for the others; and the errors, now also of the rows with NaN or infinite
        values (in their embedding, local features or views), or a score that is not finite."""
        errors = check_finite(features, errors)
        ok = np.asarray([not e for e in errors], dtype=bool)
        scores = np.full(len(errors), np.nan)
        more: dict[str, Any] = {}
        if features.local is not None:
            more["local"] = features.local[ok]
        if features.views is not None:
            more["views"] = [v[ok] for v in features.views]
        with self._lock:
            if ok.any():
                scores[ok] = self.detector.score(features.embeddings[ok], attrs, source, **more)
            elif attrs is not None:
                self.detector.check_model(attrs, source)
        for i in np.flatnonzero(ok & ~np.isfinite(scores)):
            errors[i], scores[i] = NON_FINITE_SCORE, np.nan
        if self.drift is not None:
            self.drift.add(scores)
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
    ``id_acceptance``, ``drift_window``, ``drift_level`` (see :class:`DeployedDetector` and
    :class:`clustermine.drift.DriftMonitor`).
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
