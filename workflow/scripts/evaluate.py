"""AUROC / FPR95 of one ID test set against each OOD benchmark of its ID set."""

from clustermine.labelsets import read_label_meta
from clustermine.logs import setup_logging
from clustermine.metrics import metrics_record, write_metrics
from clustermine.score_files import read_scores

log = setup_logging(snakemake.log[0])
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
id_file = read_scores(inp.scores, wc.testset)
ood = {name: read_scores(inp.scores, name).scores for name in params.benchmarks}
label_meta = read_label_meta(inp.labels[0]) if inp.labels else {}
record = metrics_record(
    model=wc.model,
    idset=wc.idset,
    method=wc.method,
    testset=wc.testset,
    detector={**id_file.attrs, "labels": params.labels},
    id_scores=id_file.scores,
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
