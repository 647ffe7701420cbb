from clustermine.logs import setup_logging
from clustermine.weights import fetch, marker_record, write_marker

log = setup_logging(snakemake.log[0])
arch, tag = snakemake.wildcards.arch, snakemake.wildcards.tag
cache = snakemake.resources.weights_cache
path, downloaded = fetch(arch, tag, cache, slug=snakemake.resources.models)
log.info(
    "%s (%s): %s %s",
    arch,
    tag,
    "downloaded" if downloaded else "already in the weight cache:",
    path,
)
write_marker(snakemake.output[0], marker_record(arch, tag, cache, path))
