"""The density of every corpus name's raw text feature (debiased negative mining), cached per
text file and k1 so that every label set mined from it reuses it."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.logs import setup_logging
from clustermine.mining.debiased import density_of_text_file

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
res = snakemake.resources
density_of_text_file(
    snakemake.input.text,
    snakemake.output[0],
    int(snakemake.wildcards.k),
    device=res.device,
    budget_bytes=budget_from_mb(res.budget_mb),
)
