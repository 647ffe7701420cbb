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
    the config makes, each once (ID sets may share their train images)."""
    keys = {}
    for idset, spec in IDSETS.items():
        for model in CFG.idset_models(idset):
            for clusterer, c in CFG.clusterings(idset):
                keys[(model, spec["train"], clusterer, c)] = None
    return [list(key) for key in keys]


def clustering_files():
    return [clusters_file(*key) for key in clustering_keys()]


def report_clustering_keys(wildcards):
    return clustering_keys()


def deployment_keys():
    """(model, deployment) of every re-mined detector, in config order."""
    return [
        (model, slug)
        for slug, spec in CFG.deployments.items()
        for model in CFG.idset_models(spec["idset"])
    ]


def deployment_report_files():
    return [
        path(kind, model=model, deployment=slug)
        for model, slug in deployment_keys()
        for kind in ("deployment_summary", "deployment_diff")
    ]


def report_deployment_keys(wildcards):
    return deployment_keys()


def report_settings(wildcards):
    """What the tables and figures need to know of the config (changes rerun them)."""
    return CFG.report_settings()


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
    return tables + [PATHS["metrics_long"]] + plots + gallery_targets()


def gallery_keys():
    """(model, ID set) of every gallery: the main model's, one per ID set."""
    model = CFG.main_model()
    return [(model, idset) for idset in IDSETS if model in CFG.idset_models(idset)]


def gallery_targets():
    return [path("gallery", model=m, idset=i) for m, i in gallery_keys()]


def gallery_plan(wildcards):
    """The files a gallery reads, by part (clustermine.gallery.GallerySources): the ID
    set's datasets with their indexes, the clusterings its label sets vote on, those label
    sets, and every method's detector and scores."""
    model, idset = wildcards.model, wildcards.idset
    spec, prompts = CFG.idset(idset), CFG.idset_prompts(idset)
    train, corpus = spec["train"], spec["corpus"]
    tests, benchmarks = CFG.idset_tests(idset), CFG.idset_benchmarks(idset)
    datasets = [train, *tests, *benchmarks]
    methods = CFG.idset_methods(idset)
    label_sets, clusterings = {}, {}
    for method in methods:
        slug = CFG.method(method)[2]
        if slug:
            clustering, name = CFG.label_set_clustering(slug), None
            if clustering is not None:
                name = "{}-C{}".format(*clustering)
                clusterings[name] = clusters_file(model, train, *clustering)
            label_sets[slug] = [label_set_file(model, idset, slug), name]
    classes = class_names_input(model, train, prompts)
    return {
        "model": model,
        "idset": idset,
        "train": train,
        "tests": tests,
        "benchmarks": benchmarks,
        "images": {ds: image_embeddings(model, ds) for ds in datasets},
        "indexes": {
            ds: (
                None
                if DATASETS[ds]["type"] == "embeddings"
                else path("index", dataset=ds)
            )
            for ds in datasets
        },
        "text": text_embeddings(model, corpus, prompts),
        # the votes of the clusters need the ID-train images' zero-shot names
        "zero_shot": (
            zero_shot_file(model, train, corpus, prompts)
            if any(CFG.label_set(s)[0].has("zero_shot") for s in label_sets)
            else None
        ),
        "classes": classes[0] if classes else None,
        "clusterings": clusterings,
        "label_sets": label_sets,
        "methods": {
            m: [
                path("detector", model=model, idset=idset, method=m),
                path("scores", model=model, idset=idset, method=m),
            ]
            for m in methods
        },
        "seed": CFG.seed,
    }


def gallery_inputs(wildcards):
    """Every file of the gallery's plan (its structure is the job's params)."""
    plan = gallery_plan(wildcards)
    files = [plan["text"], plan["zero_shot"], plan["classes"]]
    files += list(plan["images"].values()) + list(plan["indexes"].values())
    files += list(plan["clusterings"].values())
    files += [f for f, _ in plan["label_sets"].values()]
    files += [f for pair in plan["methods"].values() for f in pair]
    return [f for f in dict.fromkeys(files) if f]
