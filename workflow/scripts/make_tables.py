"""Paper-shaped tables (TSV, Markdown, HTML) from every metrics file of the config."""

from clustermine.logs import setup_logging
from clustermine.metrics import read_metrics
from clustermine.tables import FORMATS, build_tables, write_long, write_table

log = setup_logging(snakemake.log[0])
records = read_metrics(snakemake.input.metrics)
log.info("%d metrics files", len(records))
for name, table in build_tables(records, snakemake.params.settings).items():
    write_table(table, {fmt: snakemake.output[f"{name}_{fmt}"] for fmt in FORMATS})
    if table.note:
        log.info("table %s: no data (%s)", name, table.note)
    else:
        log.info("table %s: %d rows", name, len(table.frame))
write_long(records, snakemake.output.long)
