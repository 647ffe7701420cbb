# Text corpora and their prompt-ensembled text embeddings.


def corpus_spec(wildcards):
    return CORPORA[wildcards.corpus]


def corpus_inputs(wildcards):
    """A word list file, and the indices of datasets whose class names join the corpus."""
    spec = CORPORA[wildcards.corpus]
    return {
        "wordlist": [spec["path"]] if spec["type"] == "wordlist" else [],
        "class_indices": [f"resources/index/{ds}.tsv" for ds in spec.get("add_class_names_of", [])],
    }


def prompt_set(wildcards):
    return wildcards.prompts


rule corpus_names:
    input:
        unpack(corpus_inputs),
    output:
        "resources/corpus/{corpus}.tsv",
    params:
        spec=corpus_spec,
    log:
        "logs/corpus/{corpus}.log",
    script:
        "../scripts/corpus_names.py"


rule embed_text:
    input:
        names="resources/corpus/{corpus}.tsv",
        checkpoint=model_checkpoint,
    output:
        "results/{model}/text/{corpus}.{prompts}.h5",
    params:
        model=model_params,
        prompts=prompt_set,
        source="corpus",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        "logs/{model}/text/{corpus}.{prompts}.log",
    benchmark:
        "benchmarks/{model}/text/{corpus}.{prompts}.tsv"
    script:
        "../scripts/embed_text.py"


rule embed_class_names:
    input:
        names="resources/index/{dataset}.tsv",
        checkpoint=model_checkpoint,
    output:
        "results/{model}/text/classes/{dataset}.{prompts}.h5",
    params:
        model=model_params,
        prompts=prompt_set,
        source="class_names",
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    log:
        "logs/{model}/text/classes/{dataset}.{prompts}.log",
    script:
        "../scripts/embed_text.py"
