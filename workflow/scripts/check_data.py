from clustermine.datacheck import DataCheck, check_dataset
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
spec = dict(snakemake.params.spec)
if snakemake.resources.public:
    spec["public"] = snakemake.resources.public
result = DataCheck(
    [check_dataset(snakemake.wildcards.dataset, spec, float(snakemake.resources.max_unreadable))]
)
log.info("data check:\n%s", result.markdown())
for warning in result.checks[0].warnings:
    log.warning("%s: %s", snakemake.wildcards.dataset, warning)
result.raise_for_errors()
result.write_tsv(snakemake.output[0])
