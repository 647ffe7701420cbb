"""AUROC / FPR95 of one ID test set against each OOD benchmark of its ID set."""

from clustermine.labelsets import read_label_meta
from clustermine.logs import setup_logging
from clustermine.metrics import metrics_record, write_metrics
from clustermine.score_files import read_pair

log = setup_logging(snakemake.log[0])
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
# ID and OOD scores as each pair was scored (one stream per pair for adaptive detectors).
pairs = {name: read_pair(inp.scores, wc.testset, name) for name in params.benchmarks}
id_file = next(iter(pairs.values()))[0]
ids = {name: pair[0].scores for name, pair in pairs.items()}
ood = {name: pair[1].scores for name, pair in pairs.items()}
label_meta = read_label_meta(inp.labels[0]) if inp.labels else {}
record = metrics_record(
    model=wc.model,
    idset=wc.idset,
    method=wc.method,
    testset=wc.testset,
    detector={**id_file.attrs, "labels": params.labels},
    id_scores=ids,
    benchmarks=ood,
    convention=params.convention,
    main_benchmarks=params.main_benchmarks,
    label_quality=label_meta.get("label_quality"),
    cluster_analysis=label_meta.get("cluster_analysis"),
)
log.info(
    "%s on %s: mean AUROC %.4f, FPR95 %.4f",
    wc.method,
    wc.testset,
    record["mean"]["auroc"],
    record["mean"]["fpr95"],
)
write_metrics(snakemake.output[0], record)
