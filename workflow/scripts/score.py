"""Score every dataset of an ID set (its test sets and OOD benchmarks) with a fitted detector;
a detector that adapts at test time on one stream per (ID test set, benchmark) pair."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.detectors.files import score_files
from clustermine.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
wc, params, res = snakemake.wildcards, snakemake.params, snakemake.resources
inp = snakemake.input
# Views: per dataset, its views in their order (see feature_inputs in score_functions.smk).
per = len(inp.views) // len(params.datasets) if "views" in inp.keys() else 0
score_files(
    snakemake.input.detector,
    params.datasets,
    snakemake.input.images,
    params.tests,
    snakemake.output[0],
    context={"model": wc.model, "idset": wc.idset, "method": wc.method},
    device=res.device,
    budget_bytes=budget_from_mb(res.budget_mb),
    local=list(inp.local) if "local" in inp.keys() else None,
    views=[inp.views[i * per : (i + 1) * per] for i in range(len(params.datasets))] if per else None,
)
