from clustermine.encode import check_unreadable, merge_shards
from clustermine.h5io import write_features
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
data = merge_shards(list(snakemake.input))
bad = data.attrs["unreadable_files"]
for path in bad:
    log.warning("unreadable image left out: %s", path)
check_unreadable(len(bad), len(data) + len(bad), float(snakemake.resources.max_unreadable), bad)
log.info(
    "%s: %d embeddings of dim %d from %d shards",
    snakemake.wildcards.dataset,
    len(data),
    data.embeddings.shape[-1] if len(data) else 0,
    data.attrs["num_shards"],
)
write_features(snakemake.output[0], data)
