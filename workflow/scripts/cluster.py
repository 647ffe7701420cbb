"""Cluster the ID-train image embeddings of a dataset with one clusterer at one C."""

import torch

from clustermine.clustering.files import cluster_files
from clustermine.compute import budget_from_mb
from clustermine.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc, res = snakemake.input, snakemake.params, snakemake.wildcards, snakemake.resources
cluster_files(
    params.method,
    params.hyperparameters,
    int(wc.C),
    images=inp.images,
    out=snakemake.output[0],
    knn=inp.get("knn"),
    labels=inp.get("labels"),
    text=inp.get("text"),
    classes=inp.classes[0] if inp.get("classes") else None,
    slug=wc.clusterer,
    device=res.device,
    budget_bytes=budget_from_mb(res.budget_mb),
)
