# Image embeddings: index a dataset once, encode it in shards (one job each), merge.
#
# Pre-flight, on the host that runs Snakemake (local rules: on a cluster the login node, which
# has the internet access compute nodes lack): fetch the pretrained weights of each
# architecture and tag once into the weight cache, and check each dataset: its index job, or
# for a precomputed embedding file every job reading it, needs its check (the check has the
# index job's params, so they rerun together and only together). The preflight job gathers
# every check and checks what spans datasets (benchmarks sharing files with their ID sets,
# word lists, precomputed corpora); nothing needs its table, so its reruns rerun nothing. The
# checks run first: they are ready at the start and have the highest priority.


localrules:
    fetch_weights,
    check_data,
    preflight,


rule fetch_weights:
    output:
        PATHS["weights"],
    log:
        log_path("weights"),
    wildcard_constraints:
        arch=r"[A-Za-z0-9_.+-]+",
        tag=r"[A-Za-z0-9_.+-]+",
    conda:
        "../envs/clustermine.yaml"
    resources:
        weights_cache=WEIGHTS_CACHE,
        models=models_of_weights,
    script:
        "../scripts/fetch_weights.py"


rule check_data:
    input:
        dataset_requires,
    output:
        PATHS["data_check"],
    log:
        log_path("data_check"),
    priority: 100
    conda:
        "../envs/clustermine.yaml"
    resources:
        max_unreadable=MAX_UNREADABLE,
        public=public_set,
    params:
        spec=index_params,
    script:
        "../scripts/check_data.py"


rule preflight:
    input:
        preflight_inputs,
    output:
        PATHS["preflight"],
    log:
        log_path("preflight"),
    priority: 100
    conda:
        "../envs/clustermine.yaml"
    params:
        spec=preflight_spec,
    script:
        "../scripts/preflight.py"


rule index_dataset:
    input:
        dataset_requires,
        checked=PATHS["data_check"],
    output:
        PATHS["index"],
    log:
        log_path("index"),
    benchmark:
        benchmark_path("index")
    conda:
        "../envs/clustermine.yaml"
    # Scans the dataset's folder tree or list once (1.28M files for ImageNet train).
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=index_params,
        seed=CFG.seed,
    script:
        "../scripts/index_dataset.py"


rule embed_images:
    input:
        index=PATHS["index"],
        checkpoint=model_checkpoint,
        weights=weights_marker,
    output:
        temp(PATHS["image_shard"]),
    log:
        log_path("image_shard"),
    benchmark:
        benchmark_path("image_shard")
    conda:
        "../envs/clustermine.yaml"
    threads: LOADER_WORKERS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
        batch_size=model_batch_size,
        loader_workers=LOADER_WORKERS,
        max_unreadable=MAX_UNREADABLE,
        weights_cache=WEIGHTS_CACHE,
    params:
        model=model_params,
        storage=model_storage,
        max_pixels=MAX_IMAGE_PIXELS,
    script:
        "../scripts/embed_images.py"


# Local patch features and corrupted views: the same encoding (and the same shards) with the
# features a score needs (catalog needs local_features, views).
use rule embed_images as embed_features with:
    output:
        temp(PATHS["feature_shard"]),
    log:
        log_path("feature_shard"),
    benchmark:
        benchmark_path("feature_shard")
    wildcard_constraints:
        features=FEATURES_PATTERN,
    params:
        model=model_params,
        storage=model_storage,
        max_pixels=MAX_IMAGE_PIXELS,
        features=lambda wc: wc.features,
        seed=CFG.seed,


rule merge_image_shards:
    input:
        image_shards,
    output:
        PATHS["images"],
    log:
        log_path("images"),
    benchmark:
        benchmark_path("images")
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        mem_mb=merge_mem_mb,
        runtime=60,
        max_unreadable=MAX_UNREADABLE,
    script:
        "../scripts/merge_image_shards.py"


use rule merge_image_shards as merge_feature_shards with:
    input:
        feature_shards,
    output:
        PATHS["features"],
    log:
        log_path("features"),
    benchmark:
        benchmark_path("features")
    wildcard_constraints:
        features=FEATURES_PATTERN,
