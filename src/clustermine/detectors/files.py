"""Fit, calibrate and run detectors from the files the workflow made (the fit_detector and
score jobs; unit-tested without Snakemake).

Fitting reads the corpus text file, the label set (and the class-name embeddings its Y_GT
positives point into, and the extra text file its negatives beyond the corpus point into:
CSP's conjugated labels), and the ID-train image file: whole when the score's catalog entry
needs ``train_embeddings``, else only its attributes. Every file must come from one model.
A detector that adapts at test time (need ``stream``) is calibrated and scored on seeded
streams (:mod:`clustermine.streams`), from its fitted state each time.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np

from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.registry import get_detector, load_detector
from clustermine.h5io import (
    check_same_model,
    read_attributes,
    EmbeddingFileError,
    ImageEmbeddings,
    read_image_embeddings,
    read_local_features,
    read_text_embeddings,
)
from clustermine.labelsets import label_texts
from clustermine.score_files import ScoreSet, write_score_file
from clustermine.staging import recorded_path
from clustermine.streams import score_stream

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


def fit_detector_files(
    score: str,
    params: Mapping[str, Any],
    *,
    train: PathLike,
    text: PathLike,
    labels: PathLike | None = None,
    classes: PathLike | None = None,
    extra: PathLike | None = None,
    calibration: PathLike | None = None,
    calibration_name: str | None = None,
    calibration_local: PathLike | None = None,
    calibration_views: Sequence[PathLike] = (),
    context: Mapping[str, Any],
    device: str | None = None,
    budget_bytes: int | None = None,
) -> Detector:
    """Fit detector ``score`` with ``params`` and calibrate it on the held-out ID images of
    ``calibration`` (named ``calibration_name``); ``context`` (model, idset, method, labels)
    names it in messages and in its file. A score that needs local features or views of the
    images it scores gets those of the calibration set (``calibration_local``,
    ``calibration_views``)."""
    where = f"config: methods.{context.get('method')}"
    try:
        cls = get_detector(score)
    except DetectorConfigError as err:
        raise DetectorConfigError(f"{where}: {err}") from err
    corpus = read_text_embeddings(text)
    checked = [(text, corpus.attrs)]
    text_pos = text_neg = None
    if labels is not None:
        class_texts = read_text_embeddings(classes) if classes is not None else None
        if class_texts is not None:
            checked.append((classes, class_texts.attrs))
        extra_texts = read_text_embeddings(extra) if extra is not None else None
        if extra_texts is not None:
            checked.append((extra, extra_texts.attrs))
        label_set, text_pos, text_neg = label_texts(labels, corpus, class_texts, extra_texts)
        log.info(
            "label set %s: %d positives, %d negatives",
            context.get("labels"),
            label_set.n_pos,
            len(label_set.negatives),
        )
    train_emb = train_labels = None
    if cls.plugin().has("train_embeddings"):
        images = read_image_embeddings(train)
        image_attrs = images.attrs
        train_emb, train_labels = images.embeddings, images.labels
    else:
        image_attrs = read_attributes(train)
    checked.append((train, image_attrs))
    check_same_model(checked)
    logit_scale = float(image_attrs.get("logit_scale", corpus.attrs.get("logit_scale", np.nan)))
    meta = {
        **context,
        "model_arch": image_attrs.get("model_arch"),
        "model_pretrained": image_attrs.get("model_pretrained"),
        # What rebuilds the model to score new images (clustermine score / serve / export).
        "random_weights": image_attrs.get("random_weights"),
        "preprocessing": image_attrs.get("preprocessing"),
        "embedding_dim": image_attrs.get("embedding_dim"),
        "library_versions": image_attrs.get("library_versions"),
        "corpus": corpus.attrs.get("corpus"),
        "prompts": corpus.attrs.get("prompts"),
        "train": recorded_path(train),
    }
    try:
        detector = cls.fit(
            train_emb,
            text_pos,
            text_neg,
            logit_scale,
            dict(params),
            train_labels,
            meta=meta,
            device=device,
            budget_bytes=budget_bytes,
        )
    except DetectorConfigError as err:
        raise DetectorConfigError(f"{where} (idset {context.get('idset')}): {err}") from err
    log.info("fitted %s: %s", score, detector.describe())
    if calibration is None:
        log.warning(
            "idset %s has no calibration set: no thresholds or p-values", context.get("idset")
        )
        return detector
    held_out = read_image_embeddings(calibration)
    # How the scored embeddings were stored: a deployed detector rounds the embeddings it
    # makes the same way, so that an image scores as it did at calibration.
    detector.meta["embedding_storage"] = str(held_out.attrs.get("storage_dtype", "float32"))
    if detector.stateful:
        # Scored as the score job scores a stream (shuffled by the stream seed, from the
        # fitted state); then back to the fitted state, in which the detector is saved.
        scores = score_stream(
            detector,
            held_out.embeddings,
            held_out.embeddings[:0],
            int(detector.params.get("stream_seed", 0)),
            held_out.attrs,
            calibration,
        ).id_scores
        detector.reset()
    else:
        more = feature_inputs(detector, calibration, held_out, calibration_local, calibration_views)
        scores = detector.score(held_out.embeddings, held_out.attrs, calibration, **more)
    cal = detector.calibrate(scores, calibration_name, {"embeddings": recorded_path(calibration)})
    log.info(
        "calibrated on %s (%d images): threshold %.6g accepts 95%% of them",
        calibration_name,
        len(cal),
        cal.threshold(0.95),
    )
    return detector


def score_files(
    detector_file: PathLike,
    datasets: Sequence[str],
    images: Sequence[PathLike],
    tests: Sequence[str],
    out: PathLike,
    *,
    context: Mapping[str, Any],
    device: str | None = None,
    budget_bytes: int | None = None,
    local: Sequence[PathLike] | None = None,
    views: Sequence[Sequence[PathLike]] | None = None,
) -> None:
    """Score every dataset of an ID set (``datasets``, their embedding files ``images``) with
    a fitted detector and write one score file ``out``; a detector that adapts at test time
    on one stream per (ID test set in ``tests``, benchmark) pair. A score that needs them gets
    each dataset's local-feature file (``local``) or view files (``views``, a list per
    dataset), in the order of ``datasets``."""
    detector = load_detector(detector_file, device, budget_bytes)

    def read(i: int, path: PathLike) -> tuple[ImageEmbeddings, dict[str, Any]]:
        embeddings = read_image_embeddings(path)
        check_same_model([(detector_file, detector.meta), (path, embeddings.attrs)])
        more = feature_inputs(
            detector, path, embeddings, local[i] if local else None, views[i] if views else ()
        )
        return embeddings, more

    sets, pairs = {}, {}
    if detector.stateful:
        # Streams mix an ID test set with a benchmark: every set is held.
        data = {d: read(i, path)[0] for i, (d, path) in enumerate(zip(datasets, images))}
        seed = int(detector.params["stream_seed"])
        benchmarks = [d for d in datasets if d not in tests]
        for test in tests:
            for bench in benchmarks:
                pair = score_stream(detector, data[test].embeddings, data[bench].embeddings, seed)
                pairs[test, bench] = pair
                log.info(
                    "stream %s + %s (%d images, seed %d): mean ID score %.6g, "
                    "mean OOD score %.6g",
                    test, bench, len(pair.order), seed,
                    pair.id_scores.mean(), pair.ood_scores.mean(),
                )  # fmt: skip
        for dataset, embeddings in data.items():
            sets[dataset] = ScoreSet(None, embeddings.labels, {})
    else:
        # One set at a time: the job holds the largest set, not all of them.
        for i, (dataset, path) in enumerate(zip(datasets, images)):
            embeddings, more = read(i, path)
            detector.score_stats = {}
            scores = detector.score(embeddings.embeddings, **more)
            log.info("%s: %d images scored, mean score %.6g", dataset, len(scores), scores.mean())
            for key, value in detector.score_stats.items():
                log.info("%s: %s = %s", dataset, key, value)
            sets[dataset] = ScoreSet(scores, embeddings.labels, {**detector.score_stats})
            del embeddings, more
    for dataset, path in zip(datasets, images):
        sets[dataset].attrs["embeddings"] = recorded_path(path)
    write_score_file(
        out,
        sets,
        {
            **detector.describe(),
            "labels": detector.meta.get("labels"),
            **context,
            "model_arch": detector.meta.get("model_arch"),
            "model_pretrained": detector.meta.get("model_pretrained"),
            "detector_file": recorded_path(detector_file),
        },
        pairs,
    )


def feature_inputs(
    detector: Detector,
    images_path: PathLike,
    images: ImageEmbeddings,
    local: PathLike | None = None,
    views: Sequence[PathLike] = (),
) -> dict[str, Any]:
    """The local patch features or view embeddings a score needs beside the embeddings
    ``images`` (read from ``images_path``), as keyword arguments of ``Detector.score``: each
    file read and checked to hold the same images, in the same order, from the same model."""
    out: dict[str, Any] = {}
    plugin = detector.plugin()
    if plugin.has("local_features"):
        if local is None:
            raise DetectorConfigError(
                f"score {detector.name!r} needs the local patch features of {images_path}"
            )
        features = read_local_features(local)
        _same_images(images_path, images, local, features)
        out["local"] = features.embeddings
    if plugin.has("views"):
        wanted = list(getattr(detector, "views", ()))
        if len(views) != len(wanted):
            raise DetectorConfigError(
                f"score {detector.name!r} averages over the views {wanted} but "
                f"{len(views)} view files were given for {images_path}"
            )
        out["views"] = []
        for view, path in zip(wanted, views):
            data = read_image_embeddings(path)
            if data.attrs.get("view") != view:
                raise EmbeddingFileError(
                    f"{path} holds the view {data.attrs.get('view')!r}, not {view!r}: the view "
                    "files must follow the order of the detector's views"
                )
            _same_images(images_path, images, path, data)
            _same_view_seed(detector, path, data)
            out["views"].append(data.embeddings)
    return out


def _same_view_seed(detector: Detector, path: PathLike, data: ImageEmbeddings) -> None:
    """Every view file a detector reads was made with one seed, which the detector records
    (at calibration) so that a deployed detector makes its views as the workflow did."""
    seed = data.attrs.get("view_seed")
    if seed is None:
        raise EmbeddingFileError(f"{path} does not record the seed of its view: re-encode it")
    known = detector.meta.get("view_seed")
    if known is not None and int(known) != int(seed):
        raise EmbeddingFileError(
            f"{path} was made with the view seed {int(seed)}, but the detector's views with "
            f"{int(known)}: encode every view with one seed"
        )
    detector.meta["view_seed"] = int(seed)


def _same_images(ref_path, ref: ImageEmbeddings, path, data: ImageEmbeddings) -> None:
    check_same_model([(ref_path, ref.attrs), (path, data.attrs)])
    if data.paths != ref.paths:
        diff = next(
            (i for i, (a, b) in enumerate(zip(ref.paths, data.paths)) if a != b),
            min(len(ref.paths), len(data.paths)),
        )
        raise EmbeddingFileError(
            f"{path} does not hold the images of {ref_path} in their order ({len(data.paths)} "
            f"vs {len(ref.paths)} images, first difference at row {diff}); re-encode both "
            "from the same dataset index"
        )
