# Text corpora and their prompt-ensembled text embeddings; the ID class names on their own.


rule corpus_names:
    input:
        unpack(corpus_inputs),
    output:
        PATHS["corpus_names"],
    log:
        log_path("corpus_names"),
    conda:
        "../envs/clustermine.yaml"
    params:
        spec=corpus_spec,
    script:
        "../scripts/corpus_names.py"


rule embed_text:
    input:
        names=PATHS["corpus_names"],
        checkpoint=model_checkpoint,
        weights=weights_marker,
    output:
        PATHS["text"],
    log:
        log_path("text"),
    benchmark:
        benchmark_path("text")
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
        weights_cache=WEIGHTS_CACHE,
    params:
        model=model_params,
        source="corpus",
    script:
        "../scripts/embed_text.py"


rule embed_class_names:
    input:
        names=PATHS["index"],
        checkpoint=model_checkpoint,
        weights=weights_marker,
    output:
        PATHS["class_text"],
    log:
        log_path("class_text"),
    benchmark:
        benchmark_path("class_text")
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
        weights_cache=WEIGHTS_CACHE,
    params:
        model=model_params,
        source="class_names",
    script:
        "../scripts/embed_text.py"


# CSP's conjugated labels "<adjective> <superclass word>" of a corpus's adjectives (the seed
# draws the words), then their text embeddings with CSP's own prompt set: the one place the
# need conjugated_labels of a miner becomes a file (docs/methods.md, CSP).
rule conjugated_names:
    input:
        PATHS["corpus_names"],
    output:
        PATHS["conjugated_names"],
    log:
        log_path("conjugated_names"),
    wildcard_constraints:
        seed=r"-?\d+",
    conda:
        "../envs/clustermine.yaml"
    script:
        "../scripts/conjugated_names.py"


rule embed_conjugated:
    input:
        names=PATHS["conjugated_names"],
        checkpoint=model_checkpoint,
        weights=weights_marker,
    output:
        PATHS["conjugated_text"],
    log:
        log_path("conjugated_text"),
    benchmark:
        benchmark_path("conjugated_text")
    wildcard_constraints:
        seed=r"-?\d+",
    conda:
        "../envs/clustermine.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
        weights_cache=WEIGHTS_CACHE,
    params:
        model=model_params,
        source="conjugated",
        prompts=conjugated_prompts,
    script:
        "../scripts/embed_text.py"
