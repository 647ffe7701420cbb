from clustermine.datacheck import check_data
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = snakemake.params
result = check_data(params.datasets, params.corpora, float(snakemake.resources.max_unreadable))
log.info("data check:\n%s", result.markdown())
for check in result.checks:
    for warning in check.warnings:
        log.warning("%s: %s", check.name, warning)
result.raise_for_errors()
result.write_tsv(snakemake.output[0])
