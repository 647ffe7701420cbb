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
    return held_mem_mb(size_mb(files), attempt)


def fit_detector_inputs(wildcards):
    model, idset = wildcards.model, wildcards.idset
    spec, prompts = CFG.idset(idset), CFG.idset_prompts(idset)
    labels = method_labels(wildcards)
    return {
        "train": image_embeddings(model, spec["train"]),
        "text": text_embeddings(model, spec["corpus"], prompts),
        "labels": [label_set_file(model, idset, labels)] if labels else [],
        "classes": class_names_input(model, spec["train"], prompts) if labels else [],
        "extra": conjugated_texts(model, idset, labels) if labels else [],
        "calibration": (
            [image_embeddings(model, calibration_dataset(wildcards))]
            if calibration_dataset(wildcards)
            else []
        ),
        "checked": precomputed_checks(spec["train"], calibration_dataset(wildcards)),
    }


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
