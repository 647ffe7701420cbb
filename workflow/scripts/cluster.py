import math

import torch

from clustermine.compute import budget_from_mb
from clustermine.cluster_analysis import ground_truth_agreement
from clustermine.clustering import ClusterConfigError, fit_clusters
from clustermine.clustering.io import write_clusters
from clustermine.h5io import (
    EmbeddingFileError,
    check_same_model,
    read_image_embeddings,
    read_text_embeddings,
)
from clustermine.knn import inherited_attrs, read_knn
from clustermine.labelsets import label_texts
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
wc, params = snakemake.wildcards, snakemake.params
images = read_image_embeddings(snakemake.input.images)
attrs = {**inherited_attrs(images.attrs), "source": str(snakemake.input.images)}
neighbors = None
if hasattr(snakemake.input, "knn"):
    neighbors = read_knn(snakemake.input.knn)
    check_same_model(
        [(snakemake.input.images, images.attrs), (snakemake.input.knn, neighbors.attrs)]
    )
    if len(neighbors) != len(images):
        raise EmbeddingFileError(
            f"{snakemake.input.knn} holds {len(neighbors)} rows but {snakemake.input.images} "
            f"{len(images)} embeddings; delete the kNN file so that it is recomputed"
        )
    attrs["knn_source"] = str(snakemake.input.knn)
texts = None
if hasattr(snakemake.input, "labels"):
    # The filtered names of a language-assisted clusterer: a label set's positives.
    corpus = read_text_embeddings(snakemake.input.text)
    classes = read_text_embeddings(snakemake.input.classes[0]) if snakemake.input.classes else None
    checked = [(snakemake.input.images, images.attrs), (snakemake.input.text, corpus.attrs)]
    check_same_model(checked + ([(snakemake.input.classes[0], classes.attrs)] if classes else []))
    _, texts, _ = label_texts(snakemake.input.labels, corpus, classes)
    attrs["names_source"] = str(snakemake.input.labels)
    log.info("%d filtered names from %s", len(texts.names), snakemake.input.labels)
try:
    result = fit_clusters(
        params.method,
        images.embeddings,
        int(wc.C),
        params.hyperparameters,
        neighbors=neighbors,
        device=snakemake.resources.device,
        budget_bytes=budget_from_mb(snakemake.resources.budget_mb),
        texts=texts,
        copy=False,  # the embeddings are not used afterwards: one copy of them less
    )
except ClusterConfigError as err:
    raise ClusterConfigError(f"config: clusterers.{wc.clusterer}: {err}") from err
# With ground-truth labels (e.g. ImageNet train), how well the clusters match the classes.
agreement = ground_truth_agreement(result.assignments, images.labels)
if agreement:
    log.info("agreement with the ground-truth classes: %s", agreement)
write_clusters(
    snakemake.output[0], result, {**attrs, **agreement, "clusterer_slug": wc.clusterer}
)
health = result.health
log.info(
    "%s: %d clusters (%d non-empty, %d empty), best head %d, size entropy %.3f of ln C = %.3f",
    snakemake.output[0],
    result.num_clusters,
    health.get("nonempty_clusters", int((result.sizes > 0).sum())),
    health.get("empty_clusters", int((result.sizes == 0).sum())),
    result.best_head,
    health.get("size_entropy", float("nan")),
    math.log(result.num_clusters),
)
# The clusterer logged these as they arose; repeated last so that they end the job's log.
for message in health.get("messages", []):
    log.warning("HEALTH CHECK (clusterers.%s, C=%s): %s", wc.clusterer, wc.C, message)
if not health.get("messages"):
    log.info("health check: passed")
