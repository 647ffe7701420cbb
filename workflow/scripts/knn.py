import torch

from clustermine.compute import budget_from_mb
from clustermine.image_rows import open_image_rows
from clustermine.knn import inherited_attrs, search_knn, write_knn
from clustermine.knn_search import KnnSearch
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
search = KnnSearch.parse(snakemake.wildcards.graph)
# An IVF search reads the rows in blocks (it holds the index's copy), an exact one whole.
with open_image_rows(snakemake.input.images) as images:
    log.info(
        "%s: %d-NN graph (%s search) of %d embeddings (dim %d)",
        snakemake.input.images,
        search.k,
        search.index,
        len(images),
        images.embeddings.shape[1],
    )
    neighbors = search_knn(
        images.embeddings,
        search,
        device=snakemake.resources.device,
        budget_bytes=budget_from_mb(snakemake.resources.budget_mb),
    )
write_knn(
    snakemake.output[0],
    neighbors,
    {**inherited_attrs(images.attrs), "source": str(snakemake.input.images)},
)
