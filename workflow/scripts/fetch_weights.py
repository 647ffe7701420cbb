from clustermine.logs import setup_logging
from clustermine.weights import fetch, is_pretrained_tag, marker_record, write_marker

log = setup_logging(snakemake.log[0])
model, params = snakemake.wildcards.model, snakemake.params
cache = snakemake.resources.weights_cache
if not is_pretrained_tag(params.pretrained):
    raise ValueError(f"models.{model} has no pretrained tag: its weights need no fetching")
path, downloaded = fetch(params.arch, params.pretrained, cache, slug=model)
log.info(
    "model %s (%s, %s): %s %s",
    model,
    params.arch,
    params.pretrained,
    "downloaded" if downloaded else "already in the weight cache:",
    path,
)
write_marker(
    snakemake.output[0], marker_record(model, params.arch, params.pretrained, cache, path)
)
