# Clustering of ID-train image embeddings: a cached kNN graph (per k), then one cluster file per
# (clusterer, C). A clusterer's settings reach its jobs through params, so editing one
# clusterer in the config reruns only its files.


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
        device=compute_device,
        budget_bytes=memory_budget_bytes,
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
        device=compute_device,
        budget_bytes=memory_budget_bytes,
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
    benchmark:
        "benchmarks/{model}/clusters/sweeps/{idset}.{clusterer}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        mem_mb=clustering_mem_mb,
        runtime=60,
    script:
        "../scripts/cluster_sweep.py"
