# Image embeddings: index a dataset once, encode it in shards (one job each), merge.


def dataset_spec(wildcards):
    return DATASETS[wildcards.dataset]


def dataset_prerequisites(wildcards):
    """Image folders written by the workflow itself (the demo) must exist before indexing."""
    return demo_outputs_for(DATASETS[wildcards.dataset])


def num_shards(dataset):
    return int(DATASETS[dataset].get("shards", 1))


def image_shards(wildcards):
    n = num_shards(wildcards.dataset)
    return [
        f"results/{wildcards.model}/images/shards/{wildcards.dataset}.{i}-of-{n}.h5"
        for i in range(n)
    ]


def encode_settings(wildcards):
    return {
        "max_unreadable_fraction": ENCODE.get("max_unreadable_fraction", 0.01),
        "seed": config.get("seed", 0),
    }


rule index_dataset:
    input:
        dataset_prerequisites,
    output:
        "resources/index/{dataset}.tsv",
    params:
        spec=dataset_spec,
        seed=config.get("seed", 0),
    log:
        "logs/index/{dataset}.log",
    script:
        "../scripts/index_dataset.py"


rule embed_images:
    input:
        index="resources/index/{dataset}.tsv",
        checkpoint=model_checkpoint,
    output:
        temp("results/{model}/images/shards/{dataset}.{shard}-of-{nshards}.h5"),
    params:
        model=model_params,
        encode=encode_settings,
        batch_size=model_batch_size,
        num_workers=ENCODE.get("num_workers", 4),
    threads: ENCODE.get("num_workers", 4)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    log:
        "logs/{model}/images/shards/{dataset}.{shard}-of-{nshards}.log",
    benchmark:
        "benchmarks/{model}/images/shards/{dataset}.{shard}-of-{nshards}.tsv"
    script:
        "../scripts/embed_images.py"


rule merge_image_shards:
    input:
        image_shards,
    output:
        "results/{model}/images/{dataset}.h5",
    params:
        max_unreadable_fraction=ENCODE.get("max_unreadable_fraction", 0.01),
    resources:
        mem_mb=16000,
        runtime=60,
    log:
        "logs/{model}/images/{dataset}.log",
    script:
        "../scripts/merge_image_shards.py"
