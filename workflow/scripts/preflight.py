"""Every dataset's check passed: check what spans datasets and the corpora, write one table."""

from clustermine.preflight import merged_tables, preflight_check
from clustermine.atomic import atomic_path
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
spec = snakemake.params.spec
result = preflight_check(spec["datasets"], spec["corpora"], spec["idsets"])
if result.checks:
    log.info("checks across datasets and of the corpora:\n%s", result.markdown())
for check in result.checks:
    for warning in check.warnings:
        log.warning("%s: %s", check.name, warning)
result.raise_for_errors()
table = merged_tables(list(snakemake.input), result)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(table, encoding="utf-8")
log.info("pre-flight passed: %d datasets checked", len(snakemake.input))
