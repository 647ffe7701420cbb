import torch

from clustermine.compute import budget_from_mb
from clustermine.h5io import read_image_embeddings
from clustermine.knn import cosine_knn, inherited_attrs, write_knn
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
images = read_image_embeddings(snakemake.input.images)
k = int(snakemake.wildcards.k)
log.info(
    "%s: %d-NN graph of %d embeddings (dim %d)",
    snakemake.input.images,
    k,
    len(images),
    images.embeddings.shape[1],
)
neighbors = cosine_knn(
    images.embeddings,
    k,
    device=snakemake.resources.device,
    budget_bytes=budget_from_mb(snakemake.resources.budget_mb),
    copy=False,  # the embeddings are not used afterwards: one copy of them less
)
write_knn(
    snakemake.output[0],
    neighbors,
    {**inherited_attrs(images.attrs), "source": str(snakemake.input.images)},
)
