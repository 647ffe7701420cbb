"""The paper's figures (PNG) from the metrics files, label sets and cluster sweeps."""

from clustermine.logs import setup_logging
from clustermine.cluster_analysis import read_sweep_table
from clustermine.labelsets import read_label_table
from clustermine.plots import PLOTS, PlotInputs
from clustermine.metrics import read_metrics
from clustermine.remine_report import deployment_record

log = setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
records = read_metrics(inp.metrics)
labels = {tuple(k): read_label_table(p) for k, p in zip(params.label_keys, inp.labels)}
sweeps = {tuple(k): read_sweep_table(p) for k, p in zip(params.sweep_keys, inp.sweeps)}
log.info(
    "%d metrics files, %d label sets, %d cluster sweeps", len(records), len(labels), len(sweeps)
)
files = iter(inp.deployments)  # a summary, then a diff, per deployment
deployments = [
    deployment_record(model, slug, next(files), next(files))
    for model, slug in params.deployment_keys
]
data = PlotInputs.build(records, params.settings, labels, sweeps, deployments)
for name, plot in PLOTS.items():
    plot(data, snakemake.output[name])
    log.info("figure %s written", name)
