"""The gallery of one (model, ID set): thumbnails of its clusters, mined positives and each
detector's mistakes, as one HTML page (clustermine.gallery)."""

from clustermine.gallery import build_gallery, sources_from
from clustermine.gallery_html import write_gallery
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
# The plan names files by their workflow paths; the job reads them where its inputs are.
local = dict(zip(snakemake.params.files, snakemake.input))
gallery = build_gallery(sources_from(snakemake.params.plan, local))
write_gallery(snakemake.output[0], gallery)
log.info("gallery %s: %d sections, %d thumbnails", snakemake.output[0],
         len(gallery.sections), gallery.thumbnails)  # fmt: skip
