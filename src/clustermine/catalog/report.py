"""The report's tables and figures by output name (``results/tables/{name}.{tsv,md,html}``,
``results/plots/{name}.png``), each with its builder; docs/results.md says which paper table
or figure each mirrors. Output names are fixed: the report rules declare every one."""

from __future__ import annotations

TABLES = {
    "ood_benchmarks": "clustermine.tables:table_ood_benchmarks",
    "id_shift": "clustermine.tables:table_id_shift",
    "corpora": "clustermine.tables:table_corpora",
    "positives": "clustermine.tables:table_positives",
    "all_benchmarks": "clustermine.tables:table_all_benchmarks",
    "plp": "clustermine.tables:table_plp",
    "openood": "clustermine.tables:table_openood",
    "clustering": "clustermine.tables:table_clustering",
    "deployments": "clustermine.remine_report:table_deployments",
}
TABLE_FORMATS = ("tsv", "md", "html")

PLOTS = {
    "auroc_by_model": "clustermine.plots:plot_auroc_by_model",
    "id_shift": "clustermine.plots:plot_id_shift",
    "label_quality": "clustermine.plots:plot_label_quality",
    "sensitivity": "clustermine.plots:plot_sensitivity",
    "cluster_analysis": "clustermine.plots:plot_cluster_analysis",
    "prompts": "clustermine.plots:plot_prompts",
    "deployments": "clustermine.remine_report:plot_deployments",
}

# Scores whose methods the pseudo-label probing table (paper Table 8) shows, each beside the
# methods that use the same label set.
PROBE_SCORES = ("plp",)
# The score a figure's legend leaves unnamed: the paper's own (Eq. 1).
PLAIN_SCORE = "eq1"
