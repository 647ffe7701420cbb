"""The demo's numbers against its bars: results/demo/summary.{md,json}."""

import json

from clustermine.datasets import read_index
from clustermine.demo.summary import demo_summary, summary_markdown
from clustermine.atomic import atomic_path
from clustermine.labelsets import jsonable, positive_names
from clustermine.logs import setup_logging
from clustermine.metrics import read_metrics_file

log = setup_logging(snakemake.log[0])
inp = snakemake.input
with open(inp.training) as f:
    training = json.load(f)
# The records follow the ID set's test sets: the first is its main ID test set.
metrics = read_metrics_file(inp.metrics)[0]
summary = demo_summary(
    training,
    positive_names(inp.labels),
    read_index(inp.index).class_names,
    metrics,
    snakemake.params.benchmark,
)
for check in summary["checks"]:
    (log.info if check["passed"] else log.warning)(
        "%s: %s (bar %s)%s", check["check"], check["value"], check["bar"],
        "" if check["passed"] else " -- BELOW THE BAR",
    )
with atomic_path(snakemake.output.json) as tmp:
    tmp.write_text(json.dumps(jsonable(summary), indent=1) + "\n")
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(summary_markdown(summary))
