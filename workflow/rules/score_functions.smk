# Input, parameter and target functions of the rules in score.smk.
def method_labels(wildcards):
    """The label-set slug of a method, or None for methods without labels."""
    return CFG.method(wildcards.method)[2]


def method_score(wildcards):
    return CFG.method(wildcards.method)[0].name


def method_params(wildcards):
    return CFG.method(wildcards.method)[1]


def fit_detector_mem_mb(wildcards, input, attempt):
    # The ID-train embeddings count only for a score that reads them (Eq. 1 reads their
    # attributes: 5 GB less to ask for with ImageNet train).
    files = list(input)
    if not CFG.method(wildcards.method)[0].has("train_embeddings"):
        files.remove(input.train)
    return held_mem_mb(read_mb(wildcards, files), attempt)


def score_mem_mb(wildcards, input, attempt):
    # A detector that does not adapt at test time holds one scored set (with its local
    # features or views) at a time: the largest counts; one that adapts streams an ID test
    # set with each benchmark and holds them all (docs/performance.md, "Memory of every job").
    if CFG.method(wildcards.method)[0].has("stream"):
        return embeddings_mem_mb(wildcards, input, attempt)
    per_set = [[f] for f in input.images]
    for key in ("local", "views"):
        if key in input.keys():
            files = list(input[key])
            per = len(files) // len(per_set)
            for i, files_of_set in enumerate(per_set):
                files_of_set += files[i * per : (i + 1) * per]
    largest = max(read_mb(wildcards, files) for files in per_set)
    return held_mem_mb(size_mb([input.detector]) + largest, attempt)


def fit_detector_inputs(wildcards):
    model, idset = wildcards.model, wildcards.idset
    spec, prompts = CFG.idset(idset), CFG.idset_prompts(idset)
    labels = method_labels(wildcards)
    return {
        "train": image_embeddings(model, spec["train"]),
        "text": text_embeddings(model, spec["corpus"], prompts),
        "labels": [label_set_file(model, idset, labels)] if labels else [],
        "label_meta": label_set_sidecars(model, idset, [labels]),
        "classes": class_names_input(model, spec["train"], prompts) if labels else [],
        "extra": conjugated_texts(model, idset, labels) if labels else [],
        "calibration": (
            [image_embeddings(model, calibration_dataset(wildcards))]
            if calibration_dataset(wildcards)
            else []
        ),
        **feature_inputs(wildcards, [calibration_dataset(wildcards)], "calibration_"),
        "checked": precomputed_checks(spec["train"], calibration_dataset(wildcards)),
    }


def method_features(wildcards):
    """The other image features a method's score reads for every image it scores: a list of
    ``local`` and ``views/<view>`` (catalog needs local_features and views)."""
    plugin, params, _ = CFG.method(wildcards.method)
    features = ["local"] if plugin.has("local_features") else []
    if plugin.has("views"):
        from clustermine.views import ViewError, expand_views

        value = plugin.value_of("views", params)
        try:
            features += [f"views/{v}" for v in expand_views(value)]
        except ViewError as err:
            raise WorkflowError(f"config: methods.{wildcards.method}.views: {err}")
    return features


def feature_inputs(wildcards, datasets, prefix=""):
    """Named inputs of the local-feature and view files of ``datasets`` (None ones skipped):
    ``local`` (one per dataset) and ``views`` (per dataset, its views in their order).
    """
    features = method_features(wildcards)
    datasets = [d for d in datasets if d is not None]
    out = {}
    if "local" in features:
        out[f"{prefix}local"] = [
            image_features(wildcards.model, d, "local") for d in datasets
        ]
    views = [f for f in features if f != "local"]
    if views:
        out[f"{prefix}views"] = [
            image_features(wildcards.model, d, v) for d in datasets for v in views
        ]
    return out


def calibration_dataset(wildcards):
    """The held-out ID set a detector is calibrated on (idsets.<slug>.calibration), or None."""
    return CFG.idset_calibration(wildcards.idset)


def scored_datasets(wildcards):
    """The datasets a detector scores: its ID set's test sets, then its OOD benchmarks."""
    return CFG.idset_tests(wildcards.idset) + CFG.idset_benchmarks(wildcards.idset)


def idset_tests(wildcards):
    return CFG.idset_tests(wildcards.idset)


def score_inputs(wildcards):
    return {
        "detector": path(
            "detector",
            model=wildcards.model,
            idset=wildcards.idset,
            method=wildcards.method,
        ),
        "images": [
            image_embeddings(wildcards.model, d) for d in scored_datasets(wildcards)
        ],
        **feature_inputs(wildcards, scored_datasets(wildcards)),
        "checked": precomputed_checks(*scored_datasets(wildcards)),
    }


def idset_benchmarks(wildcards):
    return CFG.idset_benchmarks(wildcards.idset)


def idset_main_benchmarks(wildcards):
    """The OOD sets averaged in the metrics' mean (extra benchmarks are reported only)."""
    return CFG.idset_benchmarks(wildcards.idset, extra=False)


def evaluate_inputs(wildcards):
    labels = method_labels(wildcards)
    return {
        "scores": path(
            "scores",
            model=wildcards.model,
            idset=wildcards.idset,
            method=wildcards.method,
        ),
        "labels": (
            [label_set_file(wildcards.model, wildcards.idset, labels)] if labels else []
        ),
        "label_meta": label_set_sidecars(wildcards.model, wildcards.idset, [labels]),
    }


def fpr_convention(wildcards):
    return CFG.idset(wildcards.idset)["fpr_convention"]


def detector_files():
    """The detector of every (model, ID set, method) the config enables: products of their
    own (clustermine score / serve / export), so a plain run rebuilds a missing one."""
    return [
        path("detector", model=model, idset=idset, method=method)
        for idset in IDSETS
        for model in CFG.idset_models(idset)
        for method in CFG.idset_methods(idset)
    ]


def metric_files():
    """The metrics file of every detector (model, ID set, method) the config enables: one
    record per ID test set."""
    return [
        path("metrics", model=model, idset=idset, method=method)
        for idset in IDSETS
        for model in CFG.idset_models(idset)
        for method in CFG.idset_methods(idset)
    ]


def deployment_inputs(wildcards):
    """The detector a deployment re-mines, the embeddings of its deployment datasets, and
    those of its ID set's test sets and benchmarks (the old-vs-new comparison)."""
    spec = CFG.deployment(wildcards.deployment)
    model, idset = wildcards.model, spec["idset"]
    evaluated = CFG.idset_tests(idset) + CFG.idset_benchmarks(idset)
    return {
        "detector": path("detector", model=model, idset=idset, method=spec["method"]),
        "images": [image_embeddings(model, d) for d in spec["images"]],
        "evaluation": [image_embeddings(model, d) for d in evaluated],
        "checked": precomputed_checks(*spec["images"], *evaluated),
    }


def deployment_datasets(wildcards):
    spec = CFG.deployment(wildcards.deployment)
    return {
        "images": list(spec["images"]),
        "evaluation": CFG.idset_tests(spec["idset"])
        + CFG.idset_benchmarks(spec["idset"]),
        "tests": CFG.idset_tests(spec["idset"]),
    }


def deployment_settings(wildcards):
    return CFG.deployment_settings(wildcards.deployment)


def deployment_convention(wildcards):
    return CFG.idset(CFG.deployment(wildcards.deployment)["idset"])["fpr_convention"]


def deployment_files():
    """Every deployment's re-mined detector, for each model of its ID set."""
    return [
        path(kind, model=model, deployment=slug)
        for slug, spec in CFG.deployments.items()
        for model in CFG.idset_models(spec["idset"])
        for kind in ("deployment", "deployment_diff", "deployment_summary")
    ]
