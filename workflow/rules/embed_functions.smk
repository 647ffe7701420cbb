# Input, parameter and target functions of the rules in embed.smk.
from clustermine.weights import is_pretrained_tag

# --- pre-flight --------------------------------------------------------------------------------


def weights_marker(wildcards):
    """The marker of the fetched weights of a model's architecture and tag, for models with a
    pretrained tag (local checkpoints and random weights need none)."""
    spec = MODELS[wildcards.model]
    if not is_pretrained_tag(spec.get("pretrained")):
        return []
    return [path("weights", arch=spec["arch"], tag=spec["pretrained"])]


def models_of_weights(wildcards):
    # The model slugs using these weights, for messages only: a resource.
    return ",".join(
        slug
        for slug, spec in MODELS.items()
        if (spec["arch"], spec.get("pretrained")) == (wildcards.arch, wildcards.tag)
    )


def public_set(wildcards):
    # The public release a dataset is changes only the check's warning: a resource.
    return DATASETS[wildcards.dataset].get("public", "")


# --- indexing and encoding ---------------------------------------------------------------------


def dataset_requires(wildcards):
    """Files that must exist before a dataset is read (made by the workflow itself in the demo)."""
    return DATASETS[wildcards.dataset].get("requires", [])


def preflight_inputs(wildcards):
    return [path("data_check", dataset=ds) for ds in CFG.used_datasets()]


def preflight_spec(wildcards):
    """What the checks across datasets read: the datasets as their checks see them, the word
    lists and precomputed corpora, and the datasets of each ID set."""
    from clustermine.preflight import checked_specs

    datasets, corpora = checked_specs(CFG)
    return {
        "datasets": {ds: dataset_params(ds) for ds in datasets},
        "corpora": corpora,
        "idsets": {slug: CFG.idset_roles(slug) for slug in CFG.idsets},
    }


def index_params(wildcards):
    return dataset_params(wildcards.dataset)


def dataset_params(dataset):
    """What a dataset's index depends on: its declaration without the shard count (how the
    encoding is split) and its prerequisites."""
    spec = DATASETS[dataset]
    params = {
        k: v for k, v in spec.items() if k not in ("shards", "requires", "public")
    }
    if spec["type"] == "embeddings":  # checked against the models they are named for
        params["models"] = {
            m: {"arch": MODELS[m]["arch"]} for m in spec.get("paths", {})
        }
    return params


def image_shards(wildcards):
    return _shards("image_shard", wildcards)


def feature_shards(wildcards):
    return _shards("feature_shard", wildcards, features=wildcards.features)


def _shards(name, wildcards, **extra):
    n = int(DATASETS[wildcards.dataset].get("shards", 1))
    return [
        path(
            name,
            model=wildcards.model,
            dataset=wildcards.dataset,
            shard=i,
            nshards=n,
            **extra,
        )
        for i in range(n)
    ]


def model_batch_size(wildcards):
    return CFG.batch_size(wildcards.model)


# Changes which images a file holds, so it is a parameter.
MAX_IMAGE_PIXELS = CFG.max_image_pixels()


def merge_mem_mb(wildcards, input, attempt):
    # The shards and their concatenation are in memory at once, and the copy written.
    return held_mem_mb(read_mb(wildcards, input), attempt, copies=3)


def embedding_targets():
    targets = [PATHS["preflight"]]  # every dataset's check, and those across datasets
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
                for prompts in config["prompts"]:
                    targets.append(text_embeddings(model, corpus, prompts))
    return sorted(set(targets))
