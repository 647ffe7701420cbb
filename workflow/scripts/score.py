"""Score every dataset of an ID set (its test sets and OOD benchmarks) with a fitted detector;
a detector that adapts at test time on one stream per (ID test set, benchmark) pair."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.detectors import load_detector
from clustermine.h5io import check_same_model, read_image_embeddings
from clustermine.logs import setup_logging
from clustermine.score_files import ScoreSet, write_score_file
from clustermine.streams import score_stream

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
res = snakemake.resources
detector = load_detector(inp.detector, res.device, budget_from_mb(res.budget_mb))
images = {}
for dataset, path in zip(params.datasets, inp.images):
    images[dataset] = read_image_embeddings(path)
    check_same_model([(inp.detector, detector.meta), (path, images[dataset].attrs)])
sets, pairs = {}, {}
if detector.stateful:
    seed = int(detector.params["stream_seed"])
    benchmarks = [d for d in params.datasets if d not in params.tests]
    for test in params.tests:
        for bench in benchmarks:
            pairs[test, bench] = score_stream(
                detector, images[test].embeddings, images[bench].embeddings, seed
            )
            log.info(
                "stream %s + %s (%d images, seed %d): mean ID score %.6g, mean OOD score %.6g",
                test,
                bench,
                len(pairs[test, bench].order),
                seed,
                pairs[test, bench].id_scores.mean(),
                pairs[test, bench].ood_scores.mean(),
            )
    for dataset, data in images.items():
        sets[dataset] = ScoreSet(None, data.labels, {})
else:
    for dataset, data in images.items():
        detector.score_stats = {}
        scores = detector.score(data.embeddings)
        log.info("%s: %d images scored, mean score %.6g", dataset, len(scores), scores.mean())
        for key, value in detector.score_stats.items():
            log.info("%s: %s = %s", dataset, key, value)
        sets[dataset] = ScoreSet(scores, data.labels, {**detector.score_stats})
for dataset, path in zip(params.datasets, inp.images):
    sets[dataset].attrs["embeddings"] = str(path)
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
    pairs,
)
