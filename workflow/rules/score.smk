# OOD detection: fit one detector per (ID set, method), score every dataset it is tested on,
# and evaluate each ID test set against the ID set's OOD benchmarks. A method's settings reach
# its jobs through params, so editing one method reruns only its files.

METHODS = config.get("methods", {})


def method_spec(method):
    if method not in METHODS:
        raise ValueError(
            f"config: method '{method}' is not declared under methods (declared: {sorted(METHODS)})"
        )
    return METHODS[method]


def method_labels(wildcards):
    """The label-set slug of a method, or None for methods without labels."""
    return method_spec(wildcards.method).get("labels")


def method_score(wildcards):
    return method_spec(wildcards.method)["score"]


def method_params(wildcards):
    """The score's parameters (the keys choosing the score and labels removed)."""
    return {
        k: v
        for k, v in method_spec(wildcards.method).items()
        if k not in ("score", "labels")
    }


def detector_file(model, idset, method):
    return f"results/{model}/detectors/{idset}.{method}.h5"


def scores_file(model, idset, method, dataset):
    return f"results/{model}/scores/{idset}.{method}/{dataset}.h5"


def fit_detector_inputs(wildcards):
    spec = idset_spec(wildcards.idset)
    prompts = idset_prompts(wildcards.idset)
    inputs = {
        "train": image_embeddings(wildcards.model, spec["train"]),
        "text": text_embeddings(wildcards.model, spec["corpus"], prompts),
        "labels": [],
        "classes": [],
    }
    labels = method_labels(wildcards)
    if labels:
        label_set_spec(labels)
        inputs["labels"] = [label_set_file(wildcards.model, wildcards.idset, labels)]
        inputs["classes"] = class_names_input(wildcards.model, spec["train"], prompts)
    return inputs


def score_dataset_inputs(wildcards):
    return {
        "detector": detector_file(wildcards.model, wildcards.idset, wildcards.method),
        "images": image_embeddings(wildcards.model, wildcards.dataset),
    }


def idset_benchmarks(wildcards):
    benchmarks = idset_spec(wildcards.idset).get("benchmarks", [])
    if not benchmarks:
        raise ValueError(f"config: idsets.{wildcards.idset} names no OOD benchmarks")
    return list(benchmarks) + list(idset_spec(wildcards.idset).get("extra_benchmarks", []))


def evaluate_inputs(wildcards):
    args = (wildcards.model, wildcards.idset, wildcards.method)
    inputs = {
        "id": scores_file(*args, wildcards.testset),
        "ood": [scores_file(*args, b) for b in idset_benchmarks(wildcards)],
        "labels": [],
    }
    labels = method_labels(wildcards)
    if labels:
        inputs["labels"] = [label_set_file(wildcards.model, wildcards.idset, labels)]
    return inputs


def fpr_convention(wildcards):
    return idset_spec(wildcards.idset).get("fpr_convention", "clip")


def metrics_targets():
    """Every metrics file: each model, ID set, method of that ID set and ID test set."""
    return [
        f"results/{model}/metrics/{idset}.{method}.{testset}.json"
        for idset, spec in IDSETS.items()
        for model in spec.get("models", MODELS)
        for method in spec.get("methods", [])
        for testset in spec.get("test", [])
    ]


rule fit_detector:
    input:
        unpack(fit_detector_inputs),
    output:
        "results/{model}/detectors/{idset}.{method}.h5",
    log:
        "logs/{model}/detectors/{idset}.{method}.log",
    benchmark:
        "benchmarks/{model}/detectors/{idset}.{method}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=240,
    params:
        score=method_score,
        score_params=method_params,
        labels=method_labels,
        seed=config.get("seed", 0),
        device=compute_device,
        budget_bytes=memory_budget_bytes,
    script:
        "../scripts/fit_detector.py"


rule score_dataset:
    input:
        unpack(score_dataset_inputs),
    output:
        "results/{model}/scores/{idset}.{method}/{dataset}.h5",
    log:
        "logs/{model}/scores/{idset}.{method}/{dataset}.log",
    benchmark:
        "benchmarks/{model}/scores/{idset}.{method}/{dataset}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=60,
    params:
        device=compute_device,
        budget_bytes=memory_budget_bytes,
    script:
        "../scripts/score_dataset.py"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        "results/{model}/metrics/{idset}.{method}.{testset}.json",
    log:
        "logs/{model}/metrics/{idset}.{method}.{testset}.log",
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        benchmarks=idset_benchmarks,
        convention=fpr_convention,
        labels=method_labels,
    script:
        "../scripts/evaluate.py"
