# Clustering of ID-train image embeddings: a cached kNN graph (per k), then one cluster file per
# (clusterer, C). A clusterer's parameters reach its jobs through params, so editing one
# clusterer reruns only its files; the device and memory budget are resources.


rule knn:
    input:
        unpack(knn_inputs),
    output:
        PATHS["knn"],
    log:
        log_path("knn"),
    benchmark:
        benchmark_path("knn")
    conda:
        "../envs/clustermine.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=clustering_mem_mb,
        runtime=240,
        device=DEVICE,
        budget_mb=BUDGET_MB,
    script:
        "../scripts/knn.py"


rule cluster:
    input:
        unpack(cluster_inputs),
    output:
        PATHS["clusters"],
    log:
        log_path("clusters"),
    benchmark:
        benchmark_path("clusters")
    conda:
        "../envs/clustermine.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=clustering_mem_mb,
        runtime=720,
        device=DEVICE,
        budget_mb=BUDGET_MB,
    params:
        method=clusterer_method,
        hyperparameters=clusterer_params,
    script:
        "../scripts/cluster.py"


rule cluster_sweep:
    input:
        unpack(sweep_inputs),
    output:
        report(
            PATHS["sweep"],
            caption="../report/cluster_sweep.rst",
            category="Clusters",
        ),
    log:
        log_path("sweep"),
    benchmark:
        benchmark_path("sweep")
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        mem_mb=clustering_mem_mb,
        runtime=60,
    script:
        "../scripts/cluster_sweep.py"
