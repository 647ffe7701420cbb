"""The paper's figures (PNG) from the metrics files, label sets and cluster sweeps."""

from clustermine.logs import setup_logging
from clustermine.plots import PLOTS, PlotInputs, read_label_table, read_sweep_table
from clustermine.tables import read_metrics

log = setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
records = read_metrics(inp.metrics)
labels = {tuple(k): read_label_table(p) for k, p in zip(params.label_keys, inp.labels)}
sweeps = {tuple(k): read_sweep_table(p) for k, p in zip(params.sweep_keys, inp.sweeps)}
log.info(
    "%d metrics files, %d label sets, %d cluster sweeps", len(records), len(labels), len(sweeps)
)
data = PlotInputs.build(records, params.settings, labels, sweeps)
for name, plot in PLOTS.items():
    plot(data, snakemake.output[name])
    log.info("figure %s written", name)
