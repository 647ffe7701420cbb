# Image embeddings: index a dataset once, encode it in shards (one job each), merge.


rule index_dataset:
    input:
        dataset_prerequisites,
    output:
        "resources/index/{dataset}.tsv",
    log:
        "logs/index/{dataset}.log",
    benchmark:
        "benchmarks/index/{dataset}.tsv"
    conda:
        "../envs/clustermine.yaml"
    # Scans the dataset's folder tree or list once (1.28M files for ImageNet train).
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=dataset_spec,
        seed=config.get("seed", 0),
    script:
        "../scripts/index_dataset.py"


rule embed_images:
    input:
        index="resources/index/{dataset}.tsv",
        checkpoint=model_checkpoint,
    output:
        temp("results/{model}/images/shards/{dataset}.{shard}-of-{nshards}.h5"),
    log:
        "logs/{model}/images/shards/{dataset}.{shard}-of-{nshards}.log",
    benchmark:
        "benchmarks/{model}/images/shards/{dataset}.{shard}-of-{nshards}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: ENCODE.get("num_workers", 4)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        model=model_params,
        encode=encode_settings,
        batch_size=model_batch_size,
        num_workers=ENCODE.get("num_workers", 4),
    script:
        "../scripts/embed_images.py"


rule merge_image_shards:
    input:
        image_shards,
    output:
        "results/{model}/images/{dataset}.h5",
    log:
        "logs/{model}/images/{dataset}.log",
    benchmark:
        "benchmarks/{model}/images/{dataset}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        mem_mb=merge_mem_mb,
        runtime=60,
    params:
        max_unreadable_fraction=ENCODE.get("max_unreadable_fraction", 0.01),
    script:
        "../scripts/merge_image_shards.py"
