# Tables and figures from every metrics file the config enables, each with a caption for
# `snakemake --report report.html`. Both rules are cheap (pandas and matplotlib, no torch).
# Output names are fixed (the catalog lists them): a table or figure whose experiment the
# config lacks is still written, saying what it needs (docs/results.md).


rule tables:
    input:
        metrics=metric_files(),
        # The clustering table reads the health and ground-truth agreement of every
        # clustering of the ID-train images (attributes only).
        clusterings=clustering_files(),
        # Every re-mined detector's summary and concept diff (the deployments table).
        deployments=deployment_report_files(),
    output:
        **table_outputs(),
        long=PATHS["metrics_long"],
    log:
        "logs/report/tables.log",
    benchmark:
        "benchmarks/report/tables.tsv"
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=report_settings,
        clustering_keys=report_clustering_keys,
        deployment_keys=report_deployment_keys,
    script:
        "../scripts/make_tables.py"


rule plots:
    input:
        metrics=metric_files(),
        labels=label_files(),
        sweeps=cluster_sweep_targets(),
        deployments=deployment_report_files(),
    output:
        **plot_outputs(),
    log:
        "logs/report/plots.log",
    benchmark:
        "benchmarks/report/plots.tsv"
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=report_settings,
        label_keys=report_label_keys,
        sweep_keys=report_sweep_keys,
        deployment_keys=report_deployment_keys,
    script:
        "../scripts/make_plots.py"


# One page per (main model, ID set): thumbnails of its clusters and their votes, its mined
# positives and the images each method gets most wrong (docs/results.md, "Galleries").
rule gallery:
    input:
        gallery_inputs,
    output:
        report(
            PATHS["gallery"],
            caption="../report/gallery.rst",
            category="Galleries",
            labels={"model": "{model}", "ID set": "{idset}"},
        ),
    log:
        "logs/report/gallery/{model}.{idset}.log",
    benchmark:
        "benchmarks/report/gallery/{model}.{idset}.tsv"
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        plan=gallery_plan,
        files=gallery_inputs,
    script:
        "../scripts/make_gallery.py"
