"""A detector ready to score new images: :func:`load_detector` and :class:`DeployedDetector`.

It joins what the workflow made (the detector file: label texts, fitted arrays, calibration)
with the model that made the embeddings, rebuilt from the attributes the file records, so that
an image goes in and a score, a p-value and a decision come out (docs/deploy.md)::

    import clustermine
    det = clustermine.load_detector("results/demo-minilm/detectors/fmnist.clustermine.h5")
    out = det.predict(["a.png", "b.jpg"])
    out.scores, out.p_values, out.ood       # arrays, one entry per image
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

from clustermine.detectors.calibration import DEFAULT_ACCEPTANCE, Calibration, check_acceptance
from clustermine.deploy.inputs import ImageSource, source_name
from clustermine.deploy.modelspec import ModelSpec, resolve_checkpoint
from clustermine.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)


class UnreadableImages(ValueError):
    """Some images given to :meth:`DeployedDetector.score_images` could not be read."""


@dataclass
class Label:
    """The label text an image matches best, with its cosine similarity."""

    name: str
    cosine: float


@dataclass
class Predictions:
    """One entry per image, in the order given. ``scores`` is NaN and ``errors`` says why
    where an image could not be read; ``p_values`` is None without a calibration and ``ood``
    None without a threshold (and None for unreadable images)."""

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
    def num_unreadable(self) -> int:
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
                "ood": self.ood[i] if self.ood else None,
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


class DeployedDetector:
    """A fitted detector and its model; made by :func:`load_detector`.

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
                self._loaded = self.model_spec.build(self.device)
                log.info(
                    "built model %s on %s in %.1f s",
                    self.model_spec.arch,
                    self._loaded.device,
                    time.perf_counter() - t0,
                )
            return self._loaded

    def preprocess(self, source: ImageSource):
        """One image as the model's input tensor (raises for an unreadable image)."""
        from clustermine.deploy.inputs import open_source

        return self.model.preprocess(open_source(source, self.max_pixels))

    def encode_pixels(self, pixels) -> np.ndarray:
        """Image embeddings [N, D] (float32, not normalised) of preprocessed images."""
        import torch

        loaded = self.model
        with self._lock, torch.inference_mode(), loaded.autocast(self.precision):
            out = []
            for s in range(0, len(pixels), self.batch_size):
                batch = pixels[s : s + self.batch_size].to(loaded.device)
                out.append(loaded.model.encode_image(batch).float().cpu().numpy())
        dim = self.detector.embedding_dim or 0
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)

    def embed(
        self, images: Sequence[ImageSource], progress: bool = False
    ) -> tuple[np.ndarray, list[str]]:
        """Embeddings of ``images`` (paths, encoded bytes or PIL images) in batches, and one
        error text per image ("" where it was read); unreadable rows are zeros."""
        import torch

        from clustermine.deploy.inputs import ImageBatchData, collate, input_shape

        loaded = self.model
        data = ImageBatchData(
            list(images), loaded.preprocess, input_shape(loaded.preprocess), self.max_pixels
        )
        paths_only = all(isinstance(x, (str, os.PathLike)) for x in data.sources)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=self.batch_size,
            num_workers=self.workers if paths_only else 0,
            collate_fn=collate,
        )
        bar = _progress(len(data), progress)
        chunks, errors = [], []
        for pixels, errs in loader:
            chunks.append(self.encode_pixels(pixels))
            errors += errs
            bar.update(len(errs))
        bar.close()
        dim = self.detector.embedding_dim or 0
        return (np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)), errors

    # --- scoring ------------------------------------------------------------------------------

    def score_embeddings(
        self,
        embeddings: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> np.ndarray:
        """Scores (float64, higher = more in-distribution) of image embeddings [N, D] made by
        the detector's model. ``attrs``: their model attributes (an embedding file's), checked
        against the detector's; ``source`` names them in messages."""
        with self._lock:
            return self.detector.score(np.asarray(embeddings), attrs, source)

    def score_images(self, images: Sequence[ImageSource], progress: bool = False) -> np.ndarray:
        """Scores of images (paths, encoded bytes or PIL images); raises
        :class:`UnreadableImages` naming each image that could not be read (use
        :meth:`predict` to get the others' scores and one error per row instead)."""
        images = list(images)
        emb, errors = self.embed(images, progress)
        bad = [f"{source_name(images[i], i)}: {e}" for i, e in enumerate(errors) if e]
        if bad:
            raise UnreadableImages(
                f"{len(bad)} of {len(images)} images could not be read: " + "; ".join(bad[:10])
            )
        return self.score_embeddings(emb)

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
        their ``attrs``, checked, and their ``source`` file for messages). An unreadable image
        gets an error in its row, never an exception. ``top_labels``: also the positive and
        negative label each image matches best (label-mining detectors)."""
        if (images is None) == (embeddings is None):
            raise ValueError("predict: give either images or embeddings")
        if images is not None:
            images = list(images)
            emb, errors = self.embed(images, progress)
            names = list(names) if names is not None else [
                source_name(x, i) for i, x in enumerate(images)
            ]  # fmt: skip
        else:
            emb = np.asarray(embeddings)
            errors = [""] * len(emb)
            names = list(names) if names is not None else [str(i) for i in range(len(emb))]
        if len(names) != len(emb):
            raise ValueError(f"predict: {len(names)} names for {len(emb)} images")
        ok = np.asarray([not e for e in errors], dtype=bool)
        scores = np.full(len(emb), np.nan)
        if ok.any():
            scores[ok] = self.score_embeddings(emb[ok], attrs, source)
        elif attrs is not None:
            self.detector.check_model(attrs, source)
        p, ood = self.decide(scores)
        out = Predictions(names, scores, errors, self.threshold, p, ood)
        if top_labels:
            out.top_positive, out.top_negative = self.top_labels(emb, ok)
        return out

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


def load_detector(
    path: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    weights_cache: str | os.PathLike | None = None,
    device: str | None = None,
    **options: Any,
) -> DeployedDetector:
    """A detector file (``results/{model}/detectors/{idset}.{method}.h5``) or a bundle folder
    (``clustermine export``) as a :class:`DeployedDetector`.

    ``checkpoint``: the model's weights file, where the recorded one is not at hand.
    ``weights_cache``: the workflow's weight cache an open_clip tag is loaded from (default:
    ``resources/weights`` of the workflow's folder when there is one, else open_clip's own).
    ``device``: where the model and the scores run (default: the GPU when there is one).
    ``options``: ``batch_size``, ``workers``, ``precision``, ``max_pixels``, ``threshold``,
    ``id_acceptance`` (see :class:`DeployedDetector`).
    """
    from clustermine.detectors import load_detector as load_detector_file

    path = Path(path)
    if path.is_dir():
        from clustermine.deploy.bundle import load_bundle

        return load_bundle(path, checkpoint=checkpoint, weights_cache=weights_cache,
                           device=device, **options)  # fmt: skip
    detector = load_detector_file(path, device)
    spec = ModelSpec.from_meta(detector.meta, str(path))
    spec.weights_cache = None if weights_cache is None else str(weights_cache)
    if checkpoint is not None:
        spec.weights = resolve_checkpoint(checkpoint)
    return DeployedDetector(
        detector,
        spec,
        source=str(path),
        device=device,
        **options,
    )
