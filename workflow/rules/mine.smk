# Label mining: the zero-shot labels of a dataset's images over a corpus (cached per dataset,
# corpus and prompt set), then one label set per (ID set, label set). A label set's settings
# reach its job through params, so editing one label set reruns only its files.

LABEL_SETS = config.get("label_sets", {})
COMPUTE = config.get("compute", {})
# Miners reading the zero-shot labels / cluster assignments of the ID-train images (as
# clustermine.mining.NEEDS_IMAGES / NEEDS_CLUSTERS; repeated so parsing never imports torch).
ZERO_SHOT_MINERS = ("posmine", "clustermine")
CLUSTER_MINERS = ("clustermine",)


def idset_spec(idset):
    if idset not in IDSETS:
        raise ValueError(
            f"config: unknown idset '{idset}' (declared: {sorted(IDSETS)})"
        )
    return IDSETS[idset]


def idset_prompts(idset):
    return idset_spec(idset).get("prompts", "simple")


def label_set_spec(labelset):
    if labelset not in LABEL_SETS:
        raise ValueError(
            f"config: label set '{labelset}' is not declared under label_sets "
            f"(declared: {sorted(LABEL_SETS)})"
        )
    return LABEL_SETS[labelset]


def has_class_names(dataset):
    """Whether a dataset's class names can be encoded: image folders always have them, file
    lists when they name a class-name file; precomputed embeddings have no index to encode
    from (mining then matches their stored class names to the corpus)."""
    spec = DATASETS[dataset]
    if spec["type"] == "filelist":
        return "class_names" in spec
    return spec["type"] == "imagefolder"


def class_names_input(model, dataset, prompts):
    return (
        [class_name_embeddings(model, dataset, prompts)]
        if has_class_names(dataset)
        else []
    )


def zero_shot_file(model, dataset, corpus, prompts):
    return f"results/{model}/zeroshot/{dataset}.{corpus}.{prompts}.h5"


def label_set_file(model, idset, labelset):
    return f"results/{model}/labels/{idset}.{labelset}.tsv"


def compute_device(wildcards):
    return COMPUTE.get("device", "auto")


def memory_budget_bytes(wildcards):
    """Working memory of chunked similarity blocks (inputs come on top)."""
    return int(COMPUTE.get("memory_budget_mb", 1024)) * 2**20


def embeddings_mem_mb(wildcards, input, attempt):
    # Inputs are read whole, plus the similarity blocks and some slack.
    return int(
        (2 * input.size_mb + COMPUTE.get("memory_budget_mb", 1024) + 2000) * attempt
    )


def zero_shot_inputs(wildcards):
    return {
        "images": image_embeddings(wildcards.model, wildcards.dataset),
        "text": text_embeddings(wildcards.model, wildcards.corpus, wildcards.prompts),
    }


def mine_inputs(wildcards):
    spec = idset_spec(wildcards.idset)
    label_set = label_set_spec(wildcards.labelset)
    miner, train, prompts = (
        label_set["miner"],
        spec["train"],
        idset_prompts(wildcards.idset),
    )
    inputs = {
        "images": image_embeddings(wildcards.model, train),
        "text": text_embeddings(wildcards.model, spec["corpus"], prompts),
        "classes": class_names_input(wildcards.model, train, prompts),
    }
    if miner in ZERO_SHOT_MINERS:
        inputs["zeroshot"] = zero_shot_file(
            wildcards.model, train, spec["corpus"], prompts
        )
    if miner in CLUSTER_MINERS:
        missing = [k for k in ("clusterer", "C") if k not in label_set]
        if missing:
            raise ValueError(
                f"config: label_sets.{wildcards.labelset} (miner {miner}) needs {missing}: "
                "the clusterer slug and number of clusters whose assignments vote"
            )
        inputs["clusters"] = clusters_file(
            wildcards.model, train, label_set["clusterer"], label_set["C"]
        )
    return inputs


def label_set_miner(wildcards):
    return label_set_spec(wildcards.labelset)["miner"]


def label_set_params(wildcards):
    """The miner's parameters (keys choosing inputs, such as clusterer and C, removed)."""
    return {
        k: v
        for k, v in label_set_spec(wildcards.labelset).items()
        if k not in ("miner", "clusterer", "C")
    }


def label_set_num_clusters(wildcards):
    return label_set_spec(wildcards.labelset).get("C")


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
    threads: 2
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
