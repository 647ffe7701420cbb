# Label mining: the zero-shot labels of a dataset's images over a corpus (cached per dataset,
# corpus and prompt set), then one label set per (ID set, label set). A label set's settings
# reach its job through params, so editing one label set reruns only its files.


rule zero_shot_labels:
    input:
        unpack(zero_shot_inputs),
    output:
        "results/{model}/zeroshot/{dataset}.{corpus}.{prompts}.h5",
    log:
        "logs/{model}/zeroshot/{dataset}.{corpus}.{prompts}.log",
    benchmark:
        "benchmarks/{model}/zeroshot/{dataset}.{corpus}.{prompts}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=120,
    params:
        k=5,
        device=compute_device,
        budget_bytes=memory_budget_bytes,
    script:
        "../scripts/zero_shot_labels.py"


rule mine_labels:
    input:
        unpack(mine_inputs),
    output:
        tsv="results/{model}/labels/{idset}.{labelset}.tsv",
        meta="results/{model}/labels/{idset}.{labelset}.json",
    log:
        "logs/{model}/labels/{idset}.{labelset}.log",
    benchmark:
        "benchmarks/{model}/labels/{idset}.{labelset}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=60,
    params:
        miner=label_set_miner,
        miner_params=label_set_params,
        num_clusters=label_set_num_clusters,
        device=compute_device,
        budget_bytes=memory_budget_bytes,
    script:
        "../scripts/mine_labels.py"
