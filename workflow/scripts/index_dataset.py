from clustermine.datasets import build_index, write_index
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
index = build_index(snakemake.params.spec, seed=snakemake.params.seed)
log.info(
    "dataset %s: %d images, %s classes",
    snakemake.wildcards.dataset,
    len(index),
    len(index.class_names) if index.class_names else "no",
)
write_index(snakemake.output[0], index)
