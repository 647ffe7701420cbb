# Tables and figures from every metrics file the config enables, each with a caption for
# `snakemake --report report.html`. Both rules are cheap (pandas and matplotlib, no torch).
# Output names are fixed: a table or figure whose experiment the config lacks is still written,
# saying what it needs (docs/results.md).

REPORT = config.get("report", {})
# As clustermine.tables.TABLES and clustermine.plots.PLOTS (repeated so that parsing the
# workflow never imports pandas or matplotlib; a unit test keeps them equal).
TABLE_NAMES = [
    "ood_benchmarks",
    "id_shift",
    "corpora",
    "positives",
    "all_benchmarks",
    "plp",
]
PLOT_NAMES = [
    "auroc_by_model",
    "id_shift",
    "label_quality",
    "sensitivity",
    "cluster_analysis",
    "prompts",
]
TABLE_FORMATS = ["tsv", "md", "html"]


def idset_models(idset):
    """Models an ID set runs for: its `models` list, else every model."""
    return list(IDSETS[idset].get("models", MODELS))


def idset_methods(idset):
    """Methods an ID set runs: its `methods` list, else every method."""
    return list(IDSETS[idset].get("methods", config.get("methods", {})))


def metric_files():
    """results/{model}/metrics/{idset}.{method}.{testset}.json for everything enabled."""
    return [
        f"results/{model}/metrics/{idset}.{method}.{testset}.json"
        for idset, spec in IDSETS.items()
        for model in idset_models(idset)
        for method in idset_methods(idset)
        for testset in spec.get("test", [])
    ]


def label_keys():
    """(model, idset, label set) of the label sets the main model uses in the main ID set
    (the label-quality figure shows those; other label sets are summarised by the metrics).
    """
    idset, model = report_main_idset(), report_main_model()
    if idset is None:
        return []
    methods = config.get("methods", {})
    used = [methods.get(m, {}).get("labels") for m in idset_methods(idset)]
    return [[model, idset, ls] for ls in dict.fromkeys(used) if ls]


def label_files():
    return [f"results/{m}/labels/{i}.{ls}.tsv" for m, i, ls in label_keys()]


def report_main_idset():
    main = REPORT.get("main_idset", next(iter(IDSETS), None))
    if main is not None and main not in IDSETS:
        raise ValueError(
            f"config: report.main_idset '{main}' is not declared under idsets "
            f"(declared: {sorted(IDSETS)})"
        )
    return main


def report_main_model():
    idset = report_main_idset()
    models = idset_models(idset) if idset else list(MODELS)
    main = REPORT.get("main_model", models[0] if models else None)
    if main is not None and main not in MODELS:
        raise ValueError(
            f"config: report.main_model '{main}' is not declared under models "
            f"(declared: {sorted(MODELS)})"
        )
    return main


def sweep_keys():
    """(model, idset, clusterer) of the cluster sweeps of the main ID set (cluster_sweep)."""
    idset = report_main_idset()
    if idset is None:
        return []
    clusterers = config.get("clusterers", {})
    return [
        [model, idset, c]
        for model in idset_models(idset)
        for c in config.get("cluster_sweep", {})
        if c in clusterers
    ]


def sweep_files():
    return [f"results/{m}/clusters/sweeps/{i}.{c}.tsv" for m, i, c in sweep_keys()]


def report_settings(wildcards):
    """What the tables and figures need to know of the config (changes rerun them)."""
    label_sets = config.get("label_sets", {})
    methods = {}
    for slug, spec in config.get("methods", {}).items():
        methods[slug] = {
            **spec,
            "label_set": dict(label_sets.get(spec.get("labels"), {})),
        }
    idsets = {
        slug: {
            "train": spec["train"],
            "test": list(spec.get("test", [])),
            "corpus": spec["corpus"],
            "prompts": spec.get("prompts", "simple"),
            "benchmarks": list(spec.get("benchmarks", [])),
            "extra_benchmarks": list(spec.get("extra_benchmarks", [])),
            "methods": idset_methods(slug),
            "models": idset_models(slug),
        }
        for slug, spec in IDSETS.items()
    }
    return {
        "models": list(MODELS),
        "main_model": report_main_model(),
        "main_idset": report_main_idset(),
        "idsets": idsets,
        "methods": methods,
    }


def report_label_keys(wildcards):
    return label_keys()


def report_sweep_keys(wildcards):
    return sweep_keys()


def table_outputs():
    outputs = {}
    for name in TABLE_NAMES:
        for fmt in TABLE_FORMATS:
            path = f"results/tables/{name}.{fmt}"
            if fmt == "md":
                outputs[f"{name}_{fmt}"] = path
                continue
            outputs[f"{name}_{fmt}"] = report(
                path,
                caption=f"../report/table_{name}.rst",
                category="Tables",
                subcategory="TSV downloads" if fmt == "tsv" else "Tables",
                labels={"table": name, "format": fmt},
            )
    return outputs


def plot_outputs():
    return {
        name: report(
            f"results/plots/{name}.png",
            caption=f"../report/plot_{name}.rst",
            category="Figures",
            labels={"figure": name},
        )
        for name in PLOT_NAMES
    }


def report_targets():
    if not IDSETS:
        return []
    return (
        [f"results/tables/{n}.{f}" for n in TABLE_NAMES for f in TABLE_FORMATS]
        + ["results/tables/metrics_long.tsv"]
        + [f"results/plots/{n}.png" for n in PLOT_NAMES]
    )


rule tables:
    input:
        metrics=metric_files(),
    output:
        **table_outputs(),
        long="results/tables/metrics_long.tsv",
    log:
        "logs/report/tables.log",
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=report_settings,
    script:
        "../scripts/make_tables.py"


rule plots:
    input:
        metrics=metric_files(),
        labels=label_files(),
        sweeps=sweep_files(),
    output:
        **plot_outputs(),
    log:
        "logs/report/plots.log",
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=report_settings,
        label_keys=report_label_keys,
        sweep_keys=report_sweep_keys,
    script:
        "../scripts/make_plots.py"
