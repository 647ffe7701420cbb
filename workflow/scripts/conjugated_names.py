"""CSP's conjugated labels of a corpus's adjectives, as a corpus table (rule conjugated_names)."""

from clustermine.logs import setup_logging
from clustermine.mining.csp import write_conjugated_names

setup_logging(snakemake.log[0])
write_conjugated_names(snakemake.input[0], snakemake.output[0], int(snakemake.wildcards.seed))
