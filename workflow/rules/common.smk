# Config validation, wildcard constraints and the small named functions rules share.
import os

from snakemake.utils import validate

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

SLUG = "[A-Za-z0-9_-]+"


wildcard_constraints:
    model=SLUG,
    dataset=SLUG,
    corpus=SLUG,
    prompts=SLUG,
    idset=SLUG,
    method=SLUG,
    labelset=SLUG,
    clusterer=SLUG,
    testset=SLUG,
    shard=r"\d+",
    nshards=r"\d+",
    C=r"\d+",
    k=r"\d+",


MODELS = config["models"]
DATASETS = config["datasets"]
CORPORA = config.get("corpora", {})
IDSETS = config.get("idsets", {})
for _spec in IDSETS.values():
    # An ID set without a method list runs every declared method.
    _spec.setdefault("methods", list(config.get("methods", {})))
ENCODE = config.get("encode", {})
DATA_ROOT = config.get("data_root", "")


def _under_data_root(path):
    return os.path.join(DATA_ROOT, path) if DATA_ROOT else path


for _spec in DATASETS.values():
    for _key in ("root", "list", "class_map", "class_names"):
        if _key in _spec:
            _spec[_key] = _under_data_root(_spec[_key])
for _spec in CORPORA.values():
    if "path" in _spec:
        _spec["path"] = _under_data_root(_spec["path"])


def _check_references():
    """Every slug an ID set names must be declared; say which key is wrong."""
    for idset, spec in IDSETS.items():
        for key in ("train", "test", "benchmarks", "extra_benchmarks"):
            value = spec.get(key, [])
            for ds in [value] if isinstance(value, str) else value:
                if ds not in DATASETS:
                    raise ValueError(
                        f"config: idsets.{idset}.{key} names dataset '{ds}', which is not "
                        f"declared under datasets (declared: {sorted(DATASETS)})"
                    )
        if spec.get("corpus") not in CORPORA:
            raise ValueError(
                f"config: idsets.{idset}.corpus '{spec.get('corpus')}' is not declared under "
                f"corpora (declared: {sorted(CORPORA)})"
            )
    for ds, spec in DATASETS.items():
        if spec["type"] == "embeddings":
            for model in spec.get("paths", {}):
                if model not in MODELS:
                    raise ValueError(
                        f"config: datasets.{ds}.paths names unknown model '{model}'"
                    )


_check_references()


def is_local_file(pretrained):
    return pretrained is not None and (
        os.sep in str(pretrained)
        or str(pretrained).endswith((".pt", ".pth", ".bin", ".safetensors"))
    )


def model_checkpoint(wildcards):
    """A local checkpoint is an input, so a workflow rule may build it (the demo model)."""
    pretrained = MODELS[wildcards.model].get("pretrained")
    return [pretrained] if is_local_file(pretrained) else []


def model_params(wildcards):
    spec = MODELS[wildcards.model]
    return {
        "arch": spec["arch"],
        "pretrained": spec.get("pretrained"),
        "precision": spec.get("precision", "auto"),
    }


def model_batch_size(wildcards):
    return MODELS[wildcards.model].get("batch_size", 256)


def image_embeddings(model, dataset):
    """Path of a dataset's image embeddings for one model (precomputed files used as is)."""
    spec = DATASETS[dataset]
    if spec["type"] == "embeddings":
        paths = spec.get("paths", {})
        if model not in paths:
            raise ValueError(
                f"config: datasets.{dataset} is precomputed but has no file for model "
                f"'{model}' under paths"
            )
        return paths[model]
    return f"results/{model}/images/{dataset}.h5"


def text_embeddings(model, corpus, prompts):
    spec = CORPORA[corpus]
    if spec["type"] == "embeddings":
        paths = spec.get("paths", {})
        if model not in paths:
            raise ValueError(
                f"config: corpora.{corpus} is precomputed but has no file for model '{model}'"
            )
        return paths[model]
    return f"results/{model}/text/{corpus}.{prompts}.h5"


def class_name_embeddings(model, dataset, prompts):
    """Text embeddings of a dataset's own class names (Y_GT), whatever the corpus holds."""
    return f"results/{model}/text/classes/{dataset}.{prompts}.h5"


def idset_datasets(spec):
    return [spec["train"], *spec.get("test", []), *spec.get("benchmarks", []),
            *spec.get("extra_benchmarks", [])]


def used_datasets():
    used = set()
    for spec in IDSETS.values():
        used.update(idset_datasets(spec))
    return sorted(used) if IDSETS else sorted(DATASETS)


def embedding_targets():
    targets = []
    for model in MODELS:
        for idset, spec in IDSETS.items():
            if model not in spec.get("models", MODELS):
                continue
            targets += [image_embeddings(model, ds) for ds in idset_datasets(spec)]
            targets.append(
                text_embeddings(model, spec["corpus"], spec.get("prompts", "simple"))
            )
        if not IDSETS:
            targets += [image_embeddings(model, ds) for ds in used_datasets()]
            for corpus in CORPORA:
                targets += [
                    text_embeddings(model, corpus, p)
                    for p in config.get("prompts", ["simple"])
                ]
    return sorted(set(targets))


def all_targets():
    """Everything the config enables (stage target functions live in their rule modules)."""
    return (
        embedding_targets()
        + cluster_sweep_targets()
        + metrics_targets()
        + report_targets()
    )


DEMO = config.get("demo", {})


def demo_outputs_for(dataset_spec):
    """The demo's marker file when a dataset lives in the demo's prepared folders."""
    if not DEMO.get("enabled", False) or dataset_spec["type"] == "embeddings":
        return []
    root = os.path.normpath(DEMO.get("root", "resources/demo"))
    data_root = os.path.normpath(dataset_spec.get("root", ""))
    inside = data_root == root or data_root.startswith(root + os.sep)
    return [os.path.join(root, ".prepared")] if inside else []


# --- image embeddings (rules/embed.smk)


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


# --- text corpora (rules/corpus.smk)


def corpus_spec(wildcards):
    return CORPORA[wildcards.corpus]


def corpus_inputs(wildcards):
    """A word list file, and the indices of datasets whose class names join the corpus."""
    spec = CORPORA[wildcards.corpus]
    return {
        "wordlist": [spec["path"]] if spec["type"] == "wordlist" else [],
        "class_indices": [
            f"resources/index/{ds}.tsv" for ds in spec.get("add_class_names_of", [])
        ],
    }


def prompt_set(wildcards):
    return wildcards.prompts
