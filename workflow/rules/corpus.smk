# Text corpora and their prompt-ensembled text embeddings.


rule corpus_names:
    input:
        unpack(corpus_inputs),
    output:
        "resources/corpus/{corpus}.tsv",
    log:
        "logs/corpus/{corpus}.log",
    conda:
        "../envs/clustermine.yaml"
    params:
        spec=corpus_spec,
    script:
        "../scripts/corpus_names.py"


rule embed_text:
    input:
        names="resources/corpus/{corpus}.tsv",
        checkpoint=model_checkpoint,
    output:
        "results/{model}/text/{corpus}.{prompts}.h5",
    log:
        "logs/{model}/text/{corpus}.{prompts}.log",
    benchmark:
        "benchmarks/{model}/text/{corpus}.{prompts}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        model=model_params,
        prompts=prompt_set,
        source="corpus",
    script:
        "../scripts/embed_text.py"


rule embed_class_names:
    input:
        names="resources/index/{dataset}.tsv",
        checkpoint=model_checkpoint,
    output:
        "results/{model}/text/classes/{dataset}.{prompts}.h5",
    log:
        "logs/{model}/text/classes/{dataset}.{prompts}.log",
    benchmark:
        "benchmarks/{model}/text/classes/{dataset}.{prompts}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    params:
        model=model_params,
        prompts=prompt_set,
        source="class_names",
    script:
        "../scripts/embed_text.py"
