"""Cluster an ID-train image file from the files the workflow made (the cluster job;
unit-tested without Snakemake): the kNN graph when the clusterer's catalog entry needs
``knn``, a label set's positives when it needs ``label_set``; every file from one model. The
cluster file records the health check and, where the images have ground-truth labels, how
well the clusters match them."""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Mapping

from clustermine.clustering import ClusterConfigError, ClusterResult, fit_clusters
from clustermine.staging import recorded_path

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
# Attributes of the kNN file a cluster file repeats as knn_<key>.
KNN_RECORDED = ("graph", "index", "nlist", "nprobe", "recall", "recall_queries",
                "exact_fallback_rows")


def cluster_files(
    method: str,
    params: Mapping[str, Any],
    num_clusters: int,
    *,
    images: PathLike,
    out: PathLike,
    knn: PathLike | None = None,
    labels: PathLike | None = None,
    text: PathLike | None = None,
    classes: PathLike | None = None,
    slug: str,
    device: str | None = None,
    budget_bytes: int | None = None,
) -> ClusterResult:
    """Cluster the embeddings of ``images`` into ``num_clusters`` with clusterer ``method``
    (config entry ``clusterers.<slug>``) and write the cluster file ``out``."""
    from clustermine.cluster_analysis import ground_truth_agreement
    from clustermine.clustering.io import write_clusters
    from clustermine.clustering.kmeans import TooManyClusters
    from clustermine.h5io import (
        EmbeddingFileError,
        check_same_model,
        read_image_embeddings,
        read_text_embeddings,
    )
    from clustermine.knn import inherited_attrs, read_knn
    from clustermine.labelsets import label_texts

    data = read_image_embeddings(images)
    attrs = {**inherited_attrs(data.attrs), "source": recorded_path(images)}
    neighbors = texts = None
    if knn is not None:
        neighbors = read_knn(knn)
        check_same_model([(images, data.attrs), (knn, neighbors.attrs)])
        if len(neighbors) != len(data):
            raise EmbeddingFileError(
                f"{knn} holds {len(neighbors)} rows but {images} {len(data)} embeddings; "
                "delete the kNN file so that it is recomputed"
            )
        _check_graph(knn, neighbors.attrs, method, params, slug)
        attrs["knn_source"] = str(knn)
        # How the graph was searched, and, for an approximate one, its measured recall.
        attrs.update({f"knn_{key}": neighbors.attrs[key] for key in KNN_RECORDED
                      if key in neighbors.attrs})  # fmt: skip
    if labels is not None:
        # A label set's positives: the filtered names of a language-assisted clusterer.
        corpus = read_text_embeddings(text)
        class_texts = read_text_embeddings(classes) if classes is not None else None
        checked = [(images, data.attrs), (text, corpus.attrs)]
        check_same_model(checked + ([(classes, class_texts.attrs)] if class_texts else []))
        _, texts, _ = label_texts(labels, corpus, class_texts)
        attrs["names_source"] = str(labels)
        log.info("%d filtered names from %s", len(texts.names), labels)
    try:
        result = fit_clusters(
            method,
            data.embeddings,
            int(num_clusters),
            params,
            neighbors=neighbors,
            device=device,
            budget_bytes=budget_bytes,
            texts=texts,
            copy=False,  # the embeddings are not used afterwards: one copy of them less
        )
    except TooManyClusters as err:
        raise TooManyClusters(slug, err.num_clusters, err.num_samples, _too_many_clusters(
            slug, err.num_clusters, err.num_samples, data.attrs.get("dataset"), images)) from None
    except ClusterConfigError as err:
        raise ClusterConfigError(f"config: clusterers.{slug}: {err}") from err
    # With ground-truth labels (e.g. ImageNet train), how well the clusters match the classes.
    agreement = ground_truth_agreement(result.assignments, data.labels)
    if agreement:
        log.info("agreement with the ground-truth classes: %s", agreement)
    write_clusters(out, result, {**attrs, **agreement, "clusterer_slug": slug})
    health = result.health
    log.info(
        "%s: %d clusters (%d non-empty, %d empty), best head %d, size entropy %.3f of "
        "ln C = %.3f",
        out,
        result.num_clusters,
        health.get("nonempty_clusters", int((result.sizes > 0).sum())),
        health.get("empty_clusters", int((result.sizes == 0).sum())),
        result.best_head,
        health.get("size_entropy", float("nan")),
        math.log(result.num_clusters),
    )
    # The clusterer logged these as they arose; repeated last so that they end the job's log.
    for message in health.get("messages", []):
        log.warning("HEALTH CHECK (clusterers.%s, C=%s): %s", slug, num_clusters, message)
    if not health.get("messages"):
        log.info("health check: passed")
    return result


def _check_graph(knn: PathLike, attrs: Mapping[str, Any], method: str,
                 params: Mapping[str, Any], slug: str) -> None:
    """Refuse a kNN file searched otherwise than clusterers.<slug> asks (a file renamed or
    copied by hand): an approximate graph must never pass for an exact one."""
    from clustermine import catalog

    want = catalog.clusterer(method).knn_search(params)
    have = attrs.get("graph", f"k{attrs.get('k')}" if attrs.get("index", "exact") == "exact"
                     else None)  # fmt: skip
    if want is not None and have != want.name:
        raise ClusterConfigError(
            f"{knn}: this kNN graph was searched as {have!r}, but clusterers.{slug} asks for "
            f"{want.name!r}; delete the file so that the knn rule makes it again"
        )


def _too_many_clusters(slug: str, num_clusters: int, num_images: int, dataset: str | None,
                       images: PathLike) -> str:
    """The error of a C larger than the ID-train set, naming where C comes from: the cluster
    job knows only the clusterer and C, which label sets and cluster sweeps name together."""
    of = f"dataset {dataset} ({images})" if dataset else str(images)
    return (
        f"config: clusterers.{slug} with C={num_clusters} asks for more clusters than the "
        f"{num_images} images of {of} (C={num_clusters} > N={num_images}). C comes from the "
        f"label sets (label_sets.<slug>.C) and cluster sweeps "
        f"(idsets.<idset>.cluster_sweep.{slug}) that name clusterers.{slug} with "
        f"C={num_clusters}: lower it there to at most {num_images}, or cluster a larger "
        "ID-train dataset."
    )
