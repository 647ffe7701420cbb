# Input, parameter and target functions of the rules in report.smk.
def label_keys():
    """(model, idset, label set) of the label sets the main model uses in the main ID set
    (the label-quality figure shows those; other label sets are summarised by the metrics).
    """
    idset, model = CFG.main_idset(), CFG.main_model()
    if idset is None:
        return []
    used = [CFG.method(m)[2] for m in CFG.idset_methods(idset)]
    return [[model, idset, ls] for ls in dict.fromkeys(used) if ls]


def label_files():
    return [label_set_file(m, i, ls) for m, i, ls in label_keys()]


def clustering_keys():
    """(model, dataset, clusterer, C) of every clustering of an ID set's train images that
    the config makes: those its methods' label sets vote on and those of its cluster
    sweeps, each once (ID sets may share their train images).
    """
    keys = {}
    for idset, spec in IDSETS.items():
        used = {}
        for method in CFG.idset_methods(idset):
            labelset = CFG.method(method)[2]
            for slug in CFG.label_set_chain(labelset) if labelset else []:
                plugin, _, inputs = CFG.label_set(slug)
                if plugin.has("clusters"):
                    used[(inputs["clusterer"], int(inputs["C"]))] = None
        for clusterer, values in (spec.get("cluster_sweep") or {}).items():
            used.update({(clusterer, int(c)): None for c in values})
        for model in CFG.idset_models(idset):
            for clusterer, c in used:
                keys[(model, spec["train"], clusterer, c)] = None
    return [list(key) for key in keys]


def clustering_files():
    return [clusters_file(*key) for key in clustering_keys()]


def report_clustering_keys(wildcards):
    return clustering_keys()


def report_settings(wildcards):
    """What the tables and figures need to know of the config (changes rerun them)."""
    methods = {
        slug: {**spec, "label_set": dict(CFG.label_sets.get(spec.get("labels"), {}))}
        for slug, spec in CFG.methods.items()
    }
    idsets = {
        slug: {
            "train": spec["train"],
            "test": CFG.idset_tests(slug),
            "corpus": spec["corpus"],
            "prompts": CFG.idset_prompts(slug),
            "benchmarks": CFG.idset_benchmarks(slug, extra=False),
            "extra_benchmarks": list(spec.get("extra_benchmarks") or []),
            "benchmark_groups": dict(spec.get("benchmark_groups") or {}),
            "fpr_convention": spec.get("fpr_convention", "clip"),
            "methods": CFG.idset_methods(slug),
            "models": CFG.idset_models(slug),
        }
        for slug, spec in IDSETS.items()
    }
    return {
        "models": list(MODELS),
        "main_model": CFG.main_model(),
        "main_idset": CFG.main_idset(),
        "idsets": idsets,
        "methods": methods,
    }


def report_label_keys(wildcards):
    return label_keys()


def report_sweep_keys(wildcards):
    return sweep_keys()


def table_outputs():
    outputs = {}
    for name in catalog.TABLES:
        for fmt in catalog.TABLE_FORMATS:
            table = path("table", table=name, fmt=fmt)
            outputs[f"{name}_{fmt}"] = (
                table
                if fmt == "md"
                else report(
                    table,
                    caption=f"../report/table_{name}.rst",
                    category="Tables",
                    subcategory="TSV downloads" if fmt == "tsv" else "Tables",
                    labels={"table": name, "format": fmt},
                )
            )
    return outputs


def plot_outputs():
    return {
        name: report(
            path("plot", figure=name),
            caption=f"../report/plot_{name}.rst",
            category="Figures",
            labels={"figure": name},
        )
        for name in catalog.PLOTS
    }


def report_targets():
    if not IDSETS:
        return []
    tables = [
        path("table", table=n, fmt=f)
        for n in catalog.TABLES
        for f in catalog.TABLE_FORMATS
    ]
    plots = [path("plot", figure=n) for n in catalog.PLOTS]
    return tables + [PATHS["metrics_long"]] + plots
