"""Mine one label set of an ID set: positives and negatives from the corpus (and Y_GT)."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.logs import setup_logging
from clustermine.mining.files import mine_label_set_files

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
wc, params, res = snakemake.wildcards, snakemake.params, snakemake.resources
mine_label_set_files(
    dict(snakemake.input.items()),
    params.miner,
    params.miner_params,
    snakemake.output.tsv,
    context={"label_set": wc.labelset, "idset": wc.idset, "model": wc.model},
    num_clusters=params.num_clusters,
    device=res.device,
    budget_bytes=budget_from_mb(res.budget_mb),
)
