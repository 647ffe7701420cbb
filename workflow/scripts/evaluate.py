"""AUROC / FPR95 of each ID test set of a detector against each OOD benchmark of its ID set."""

from clustermine.logs import setup_logging
from clustermine.metrics import evaluate_detector, write_metrics

log = setup_logging(snakemake.log[0])
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
records = evaluate_detector(
    inp.scores,
    model=wc.model,
    idset=wc.idset,
    method=wc.method,
    tests=params.tests,
    benchmarks=params.benchmarks,
    labels=params.labels,
    labels_path=inp.labels[0] if inp.labels else None,
    convention=params.convention,
    main_benchmarks=params.main_benchmarks,
)
for record in records:
    log.info(
        "%s on %s: mean AUROC %.4f, FPR95 %.4f",
        wc.method,
        record["testset"],
        record["mean"]["auroc"],
        record["mean"]["fpr95"],
    )
write_metrics(snakemake.output[0], records)
