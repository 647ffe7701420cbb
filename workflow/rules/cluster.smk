# Clustering of ID-train image embeddings: a cached kNN graph (per k), then one cluster file per
# (clusterer, C). A clusterer's settings reach its jobs through params, so editing one
# clusterer in the config reruns only its files.

CLUSTERERS = config.get("clusterers", {})
CLUSTER_SWEEP = config.get("cluster_sweep", {})
CLUSTER_COMPUTE = config.get("compute", {})
# Methods trained on kNN pairs and their default k (as clustermine.clustering.KNN_DEFAULTS).
KNN_DEFAULT_K = {"temi": 50}


def clusterer_spec(clusterer):
    if clusterer not in CLUSTERERS:
        raise ValueError(
            f"config: clusterer '{clusterer}' is not declared under clusterers "
            f"(declared: {sorted(CLUSTERERS)})"
        )
    return CLUSTERERS[clusterer]


def clusterer_knn_k(clusterer):
    """k of the kNN graph a clusterer trains on, or None."""
    spec = clusterer_spec(clusterer)
    if spec["method"] not in KNN_DEFAULT_K:
        return None
    return int(spec.get("knn", KNN_DEFAULT_K[spec["method"]]))


def knn_file(model, dataset, k):
    return f"results/{model}/knn/{dataset}.k{k}.h5"


def clusters_file(model, dataset, clusterer, C):
    """Path of a cluster file; other stages name their inputs with it."""
    return f"results/{model}/clusters/{dataset}.{clusterer}-C{C}.h5"


def knn_image_input(wildcards):
    return image_embeddings(wildcards.model, wildcards.dataset)


def cluster_inputs(wildcards):
    inputs = {"images": image_embeddings(wildcards.model, wildcards.dataset)}
    k = clusterer_knn_k(wildcards.clusterer)
    if k is not None:
        inputs["knn"] = knn_file(wildcards.model, wildcards.dataset, k)
    return inputs


def clusterer_method(wildcards):
    return clusterer_spec(wildcards.clusterer)["method"]


def clusterer_params(wildcards):
    """The clusterer's hyperparameters (without ``method``), seeded by the global seed unless
    the clusterer sets its own."""
    spec = dict(clusterer_spec(wildcards.clusterer))
    spec.pop("method")
    spec.setdefault("seed", config.get("seed", 0))
    return spec


def clustering_device(wildcards):
    return CLUSTER_COMPUTE.get("device", "auto")


def clustering_budget_bytes(wildcards):
    """Working memory of the chunked similarity blocks (kNN, k-means)."""
    return int(CLUSTER_COMPUTE.get("memory_budget_mb", 1024)) * 2**20


def clustering_mem_mb(wildcards, input, attempt):
    # Embeddings are held about three times (raw, prepared, on the device) plus the kNN graph
    # and the similarity blocks.
    budget_mb = CLUSTER_COMPUTE.get("memory_budget_mb", 1024)
    return int((4 * input.size_mb + budget_mb + 2000) * attempt)


def sweep_idset(wildcards):
    if wildcards.idset not in IDSETS:
        raise ValueError(
            f"config: unknown idset '{wildcards.idset}' in a cluster sweep target"
        )
    return IDSETS[wildcards.idset]


def sweep_inputs(wildcards):
    spec = sweep_idset(wildcards)
    values = CLUSTER_SWEEP.get(wildcards.clusterer)
    if not values:
        raise ValueError(
            f"config: cluster_sweep has no list of C for clusterer '{wildcards.clusterer}'"
        )
    return {
        "images": image_embeddings(wildcards.model, spec["train"]),
        # The zero-shot labels are cached by the mining stage (zero_shot_file, mine.smk).
        "zeroshot": zero_shot_file(
            wildcards.model,
            spec["train"],
            spec["corpus"],
            spec.get("prompts", "simple"),
        ),
        "clusters": [
            clusters_file(wildcards.model, spec["train"], wildcards.clusterer, c)
            for c in sorted(values)
        ],
    }


def cluster_sweep_targets():
    """One sweep table per model, ID set and clusterer listed under cluster_sweep."""
    return [
        f"results/{model}/clusters/sweeps/{idset}.{clusterer}.tsv"
        for model in MODELS
        for idset in IDSETS
        for clusterer in CLUSTER_SWEEP
        if clusterer in CLUSTERERS
    ]


rule knn:
    input:
        images=knn_image_input,
    output:
        "results/{model}/knn/{dataset}.k{k}.h5",
    log:
        "logs/{model}/knn/{dataset}.k{k}.log",
    benchmark:
        "benchmarks/{model}/knn/{dataset}.k{k}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=clustering_mem_mb,
        runtime=240,
    params:
        device=clustering_device,
        budget_bytes=clustering_budget_bytes,
    script:
        "../scripts/knn.py"


rule cluster:
    input:
        unpack(cluster_inputs),
    output:
        "results/{model}/clusters/{dataset}.{clusterer}-C{C}.h5",
    log:
        "logs/{model}/clusters/{dataset}.{clusterer}-C{C}.log",
    benchmark:
        "benchmarks/{model}/clusters/{dataset}.{clusterer}-C{C}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=clustering_mem_mb,
        runtime=720,
    params:
        method=clusterer_method,
        hyperparameters=clusterer_params,
        device=clustering_device,
        budget_bytes=clustering_budget_bytes,
    script:
        "../scripts/cluster.py"


rule cluster_sweep:
    input:
        unpack(sweep_inputs),
    output:
        report(
            "results/{model}/clusters/sweeps/{idset}.{clusterer}.tsv",
            caption="../report/cluster_sweep.rst",
            category="Clusters",
        ),
    log:
        "logs/{model}/clusters/sweeps/{idset}.{clusterer}.log",
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        mem_mb=clustering_mem_mb,
        runtime=60,
    script:
        "../scripts/cluster_sweep.py"
