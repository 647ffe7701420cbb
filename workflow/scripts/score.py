"""Score every dataset of an ID set (its test sets and OOD benchmarks) with a fitted detector."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.detectors import load_detector
from clustermine.h5io import check_same_model, read_image_embeddings
from clustermine.logs import setup_logging
from clustermine.score_files import ScoreSet, write_score_file

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
res = snakemake.resources
detector = load_detector(inp.detector, res.device, budget_from_mb(res.budget_mb))
sets = {}
for dataset, path in zip(params.datasets, inp.images):
    images = read_image_embeddings(path)
    check_same_model([(inp.detector, detector.meta), (path, images.attrs)])
    scores = detector.score(images.embeddings)
    log.info("%s: %d images scored, mean score %.6g", dataset, len(scores), scores.mean())
    sets[dataset] = ScoreSet(scores, images.labels, {"embeddings": str(path)})
write_score_file(
    snakemake.output[0],
    sets,
    {
        **detector.describe(),
        "labels": detector.meta.get("labels"),
        "model": wc.model,
        "idset": wc.idset,
        "method": wc.method,
        "model_arch": detector.meta.get("model_arch"),
        "model_pretrained": detector.meta.get("model_pretrained"),
        "detector_file": str(inp.detector),
    },
)
