"""Score every image of one dataset with a fitted detector (higher = more in-distribution)."""

import torch

from clustermine.detectors import load_detector
from clustermine.h5io import check_same_model, read_image_embeddings
from clustermine.logs import setup_logging
from clustermine.score_files import write_scores

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
detector = load_detector(inp.detector, params.device, params.budget_bytes)
images = read_image_embeddings(inp.images)
check_same_model([(inp.detector, detector.meta), (inp.images, images.attrs)])
scores = detector.score(images.embeddings)
log.info("%s: %d images scored, mean %.6g", wc.dataset, len(scores), scores.mean())
write_scores(
    snakemake.output[0],
    scores,
    images.labels,
    {
        **detector.describe(),
        "labels": detector.meta.get("labels"),
        "model": wc.model,
        "idset": wc.idset,
        "method": wc.method,
        "dataset": wc.dataset,
        "model_arch": images.attrs.get("model_arch"),
        "model_pretrained": images.attrs.get("model_pretrained"),
        "detector_file": str(inp.detector),
    },
)
