# Label mining: the zero-shot labels of a dataset's images over a corpus (cached per dataset,
# corpus and prompt set), then one label set per (ID set, label set). What a miner reads is
# declared in the plugin catalog (its needs); its parameters reach its job through params, so
# editing one label set reruns only its files.


rule zero_shot_labels:
    input:
        unpack(zero_shot_inputs),
    output:
        PATHS["zero_shot"],
    log:
        log_path("zero_shot"),
    benchmark:
        benchmark_path("zero_shot")
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=streamed_mem_mb,
        runtime=120,
        device=DEVICE,
        budget_mb=BUDGET_MB,
    params:
        k=5,
    script:
        "../scripts/zero_shot_labels.py"


rule text_density:
    input:
        unpack(density_inputs),
    output:
        PATHS["text_density"],
    log:
        log_path("text_density"),
    benchmark:
        benchmark_path("text_density")
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=120,
        device=DEVICE,
        budget_mb=BUDGET_MB,
    script:
        "../scripts/text_density.py"


rule mine_labels:
    input:
        unpack(mine_inputs),
    output:
        tsv=PATHS["labels"],
        meta=PATHS["label_meta"],
    log:
        log_path("labels"),
    benchmark:
        benchmark_path("labels")
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=mine_mem_mb,
        runtime=60,
        device=DEVICE,
        budget_mb=BUDGET_MB,
    params:
        miner=label_set_miner,
        miner_params=label_set_params,
        num_clusters=label_set_num_clusters,
    script:
        "../scripts/mine_labels.py"
