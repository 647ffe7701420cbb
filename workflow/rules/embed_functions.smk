# Input, parameter and target functions of the rules in embed.smk.
from clustermine.datacheck import checked_specs
from clustermine.weights import is_pretrained_tag

# What the data check reads: the datasets and word lists the config uses (no I/O here).
CHECKED_DATASETS, CHECKED_CORPORA = checked_specs(CFG)


# --- pre-flight --------------------------------------------------------------------------------


def model_arch(wildcards):
    return MODELS[wildcards.model]["arch"]


def model_pretrained(wildcards):
    return MODELS[wildcards.model].get("pretrained")


def weights_marker(wildcards):
    """The marker of a model's fetched weights, for models with a pretrained tag (local
    checkpoints and random weights need none)."""
    if not is_pretrained_tag(model_pretrained(wildcards)):
        return []
    return [ancient(path("weights", model=wildcards.model))]


def weights_cache(wildcards):
    # Where the weights lie changes only where they are read from: a resource, not a param.
    return CFG.weights_cache()


def data_check_requires(wildcards):
    """Files the checked datasets need made first (by the workflow itself in the demo)."""
    return sorted(
        {f for spec in CHECKED_DATASETS.values() for f in spec.get("requires", [])}
    )


def data_check_datasets(wildcards):
    return CHECKED_DATASETS


def data_check_corpora(wildcards):
    return CHECKED_CORPORA


# --- indexing and encoding ---------------------------------------------------------------------


def dataset_requires(wildcards):
    """Files that must exist before a dataset is read (made by the workflow itself in the demo)."""
    return DATASETS[wildcards.dataset].get("requires", [])


def index_params(wildcards):
    """What the index depends on: the dataset's declaration without the shard count (how the
    encoding is split) and its prerequisites."""
    spec = DATASETS[wildcards.dataset]
    return {k: v for k, v in spec.items() if k not in ("shards", "requires", "public")}


def image_shards(wildcards):
    n = int(DATASETS[wildcards.dataset].get("shards", 1))
    return [
        path(
            "image_shard",
            model=wildcards.model,
            dataset=wildcards.dataset,
            shard=i,
            nshards=n,
        )
        for i in range(n)
    ]


def model_batch_size(wildcards):
    return CFG.batch_size(wildcards.model)


def encode_threads(wildcards):
    return max(1, CFG.loader_workers())


def loader_workers(wildcards):
    return max(1, CFG.loader_workers())


def max_image_pixels(wildcards):
    # Changes which images a file holds, so it is a parameter.
    return CFG.max_image_pixels()


def max_unreadable(wildcards):
    # A gate, not a parameter: it decides whether a run fails, never what a finished file
    # holds (docs/workflow.md). Resources are integers or strings, so it travels as a string.
    return str(CFG.max_unreadable_fraction())


def merge_mem_mb(wildcards, input, attempt):
    # The shards and their concatenation are in memory at once.
    return int((3 * input.size_mb + 1000) * attempt)


def embedding_targets():
    targets = []
    for model in MODELS:
        for idset, spec in IDSETS.items():
            if model not in CFG.idset_models(idset):
                continue
            targets += [image_embeddings(model, ds) for ds in CFG.idset_datasets(idset)]
            targets.append(
                text_embeddings(model, spec["corpus"], CFG.idset_prompts(idset))
            )
        if not IDSETS:
            targets += [image_embeddings(model, ds) for ds in CFG.used_datasets()]
            for corpus in CORPORA:
                for prompts in config.get("prompts", ["simple"]):
                    targets.append(text_embeddings(model, corpus, prompts))
    return sorted(set(targets))
