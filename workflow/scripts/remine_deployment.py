"""Re-mine a fitted detector from the embeddings of deployment datasets
(clustermine.remine.remine_files)."""

import torch

from clustermine.logs import setup_logging
from clustermine.remine import remine_files

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, out = snakemake.input, snakemake.params, snakemake.output
datasets = params.datasets
remine_files(
    inp.detector,
    dict(zip(datasets["images"], inp.images)),
    dict(zip(datasets["evaluation"], inp.evaluation)),
    datasets["tests"],
    out=out.detector,
    diff_out=out.diff,
    summary_out=out.summary,
    settings=params.settings,
    convention=params.convention,
    device=snakemake.resources.device,
)
