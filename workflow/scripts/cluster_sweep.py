import numpy as np

from clustermine.cluster_analysis import sweep_report, write_sweep_table
from clustermine.clustering.io import read_clusters
from clustermine.h5io import EmbeddingFileError, check_same_model, read_image_embeddings
from clustermine.logs import setup_logging
from clustermine.zeroshot import read_zero_shot

log = setup_logging(snakemake.log[0])
images = read_image_embeddings(snakemake.input.images)
zero_shot = read_zero_shot(snakemake.input.zeroshot)
check_same_model(
    [(snakemake.input.images, images.attrs), (snakemake.input.zeroshot, zero_shot.attrs)]
)
if len(zero_shot.top1) != len(images):
    raise EmbeddingFileError(
        f"{snakemake.input.zeroshot}: {len(zero_shot.top1)} zero-shot labels but "
        f"{snakemake.input.images} holds {len(images)} images; delete it so that it is recomputed"
    )
top1 = zero_shot.top1
by_c = {}
for path in snakemake.input.clusters:
    result = read_clusters(path)
    if len(result) != len(images):
        raise EmbeddingFileError(
            f"{path}: {len(result)} assignments but {snakemake.input.images} holds {len(images)} "
            "images; delete the cluster file so that it is recomputed"
        )
    by_c[result.num_clusters] = result.assignments
ground_truth = images.labels if np.any(images.labels >= 0) else None
rows, knee = sweep_report(by_c, top1, ground_truth)
log.info("%s: elbow of |Y_pos| over C at C=%s", snakemake.wildcards.clusterer, knee)
write_sweep_table(snakemake.output[0], rows, knee)
