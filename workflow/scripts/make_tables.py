"""Paper-shaped tables (TSV, Markdown, HTML) from every metrics file of the config."""

from clustermine.clustering.io import read_cluster_attrs
from clustermine.logs import setup_logging
from clustermine.metrics import read_metrics
from clustermine.remine_report import deployment_record
from clustermine.tables import FORMATS, build_tables, clustering_record, write_long, write_table

log = setup_logging(snakemake.log[0])
records = read_metrics(snakemake.input.metrics)
clusterings = [
    clustering_record(*key, read_cluster_attrs(path))
    for key, path in zip(snakemake.params.clustering_keys, snakemake.input.clusterings)
]
log.info("%d metrics files, %d clusterings", len(records), len(clusterings))
for c in clusterings:
    for message in c["messages"]:
        log.warning("clustering %s C=%d (%s): %s", c["clusterer"], c["C"], c["model"], message)
files = iter(snakemake.input.deployments)  # a summary, then a diff, per deployment
deployments = [
    deployment_record(model, slug, next(files), next(files))
    for model, slug in snakemake.params.deployment_keys
]
tables = build_tables(records, snakemake.params.settings, clusterings, deployments)
for name, table in tables.items():
    write_table(table, {fmt: snakemake.output[f"{name}_{fmt}"] for fmt in FORMATS})
    if table.note:
        log.info("table %s: no data (%s)", name, table.note)
    else:
        log.info("table %s: %d rows", name, len(table.frame))
write_long(records, snakemake.output.long)
