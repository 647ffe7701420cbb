# Config validation, wildcard constraints and the small named functions rules share.
import functools
import os

from snakemake.utils import validate

from clustermine.datasets import class_names_available

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
COMPUTE = config.get("compute", {})
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
    return [
        spec["train"],
        *spec.get("test", []),
        *spec.get("benchmarks", []),
        *spec.get("extra_benchmarks", []),
    ]


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
        + metric_files()
        + report_targets()
        + demo_summary_targets()
    )


DEMO = config.get("demo", {})

# --- demo (rules/demo.smk)

# As clustermine.demo_data.SPLITS, TRAINING_SPLITS and TUXPAINT_TRAIN_CATEGORIES (repeated so that parsing the workflow
# imports nothing heavy; a unit test keeps them equal).
DEMO_SPLITS = [
    "fmnist-train",
    "fmnist-test",
    "digits-train",
    "digits-heldout",
    "tuxpaint-train",
    "tuxpaint-heldout",
    "textures",
    "unseen-digits",
]
DEMO_TRAINING_SPLITS = ["fmnist-train", "digits-train", "tuxpaint-train"]
DEMO_TUXPAINT_TRAIN_CATEGORIES = [
    "animals",
    "food",
    "hobbies",
    "household",
    "medical",
    "military",
    "people",
    "plants",
]
# The split the demo model's zero-shot accuracy is measured on while it trains.
DEMO_EVAL_SPLIT = "fmnist-test"
DEMO_CHECKPOINT = "resources/models/demo-minilm.pt"
DEMO_TRAINING_SUMMARY = "resources/models/demo-minilm.json"


def demo_root():
    return os.path.normpath(DEMO.get("root", "resources/demo"))


def demo_split_marker(split):
    return os.path.join(demo_root(), ".splits", f"{split}.json")


def demo_train_settings():
    return DEMO.get("train", {})


def demo_split_params(wildcards):
    """Only the settings a split depends on, so changing one reruns only the splits it shapes."""
    train = demo_train_settings()
    params = {"root": demo_root(), "split": wildcards.split, "seed": config.get("seed", 0)}
    if wildcards.split.startswith("digits-"):
        params["digits_train"] = train.get("digits_train", 4000)
    if wildcards.split.startswith("tuxpaint-"):
        params["tuxpaint_train_categories"] = train.get(
            "tuxpaint_train_categories", DEMO_TUXPAINT_TRAIN_CATEGORIES
        )
    return params


def demo_train_params(wildcards):
    train = demo_train_settings()
    return {
        "root": demo_root(),
        "seed": config.get("seed", 0),
        "epochs": train.get("epochs", 4),
        "batch_size": train.get("batch_size", 256),
        "lr": train.get("lr", 0.002),
        "training_splits": DEMO_TRAINING_SPLITS,
        "eval_split": DEMO_EVAL_SPLIT,
    }


# The demo's own numbers against its bars (docs/demo.md): the model that uses the trained
# checkpoint, ClusterMine's label set in the main ID set and its AUROC against held-out digits.
def demo_summary_spec():
    spec = {"method": "clustermine", "benchmark": "digits-heldout", **DEMO.get("summary", {})}
    models = [m for m, s in MODELS.items() if s.get("pretrained") == DEMO_CHECKPOINT]
    idset = report_main_idset()
    if not DEMO.get("enabled") or not models or idset is None:
        return None
    benchmarks = IDSETS[idset].get("benchmarks", []) + IDSETS[idset].get("extra_benchmarks", [])
    if spec["method"] not in idset_methods(idset) or spec["benchmark"] not in benchmarks:
        return None
    return {**spec, "model": models[0], "idset": idset}


def demo_summary_targets():
    return ["results/demo/summary.md"] if demo_summary_spec() else []


def demo_summary_inputs(wildcards):
    spec = demo_summary_spec()
    idset = IDSETS[spec["idset"]]
    return {
        "training": DEMO_TRAINING_SUMMARY,
        "labels": label_set_file(
            spec["model"], spec["idset"], METHODS[spec["method"]]["labels"]
        ),
        "metrics": f"results/{spec['model']}/metrics/{spec['idset']}.{spec['method']}."
        f"{idset['test'][0]}.json",
        "index": f"resources/index/{idset['train']}.tsv",
    }


def demo_summary_benchmark(wildcards):
    return demo_summary_spec()["benchmark"]


def demo_outputs_for(dataset_spec):
    """The marker of the demo split a dataset lives in (rule prepare_demo_split), if any."""
    if not DEMO.get("enabled", False) or dataset_spec["type"] == "embeddings":
        return []
    relative = os.path.relpath(os.path.normpath(dataset_spec.get("root", "")), demo_root())
    split = relative.split(os.sep)[0]
    if relative.startswith(os.pardir) or split not in DEMO_SPLITS:
        return []
    return [demo_split_marker(split)]


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


def merge_mem_mb(wildcards, input, attempt):
    # The shards and their concatenation are in memory at once.
    return int((3 * input.size_mb + 1000) * attempt)


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


# --- cluster stage (rules/cluster.smk)

CLUSTERERS = config.get("clusterers", {})
# Methods trained on kNN pairs and their default k (as clustermine.clustering.KNN_DEFAULTS).
KNN_DEFAULT_K = {"temi": 50}


def clusterer_spec(clusterer):
    if clusterer not in CLUSTERERS:
        raise ValueError(
            f"config: clusterer '{clusterer}' is not declared under clusterers "
            f"(declared: {sorted(CLUSTERERS)})"
        )
    return CLUSTERERS[clusterer]


def clusterer_knn_k(clusterer):
    """k of the kNN graph a clusterer trains on, or None."""
    spec = clusterer_spec(clusterer)
    if spec["method"] not in KNN_DEFAULT_K:
        return None
    return int(spec.get("knn", KNN_DEFAULT_K[spec["method"]]))


def knn_file(model, dataset, k):
    return f"results/{model}/knn/{dataset}.k{k}.h5"


def clusters_file(model, dataset, clusterer, C):
    """Path of a cluster file; other stages name their inputs with it."""
    return f"results/{model}/clusters/{dataset}.{clusterer}-C{C}.h5"


def knn_image_input(wildcards):
    return image_embeddings(wildcards.model, wildcards.dataset)


def cluster_inputs(wildcards):
    inputs = {"images": image_embeddings(wildcards.model, wildcards.dataset)}
    k = clusterer_knn_k(wildcards.clusterer)
    if k is not None:
        inputs["knn"] = knn_file(wildcards.model, wildcards.dataset, k)
    return inputs


def clusterer_method(wildcards):
    return clusterer_spec(wildcards.clusterer)["method"]


def clusterer_params(wildcards):
    """The clusterer's hyperparameters (without ``method``), seeded by the global seed unless
    the clusterer sets its own."""
    spec = dict(clusterer_spec(wildcards.clusterer))
    spec.pop("method")
    spec.setdefault("seed", config.get("seed", 0))
    return spec


def clustering_mem_mb(wildcards, input, attempt):
    # Embeddings are held about three times (raw, prepared, on the device) plus the kNN graph
    # and the similarity blocks.
    budget_mb = COMPUTE.get("memory_budget_mb", 1024)
    return int((4 * input.size_mb + budget_mb + 2000) * attempt)


def sweep_idset(wildcards):
    if wildcards.idset not in IDSETS:
        raise ValueError(
            f"config: unknown idset '{wildcards.idset}' in a cluster sweep target"
        )
    return IDSETS[wildcards.idset]


def sweep_inputs(wildcards):
    spec = sweep_idset(wildcards)
    values = spec.get("cluster_sweep", {}).get(wildcards.clusterer)
    if not values:
        raise ValueError(
            f"config: idsets.{wildcards.idset}.cluster_sweep has no list of C for clusterer "
            f"'{wildcards.clusterer}'"
        )
    return {
        "images": image_embeddings(wildcards.model, spec["train"]),
        # The zero-shot labels are cached by the mining stage (zero_shot_file, mine.smk).
        "zeroshot": zero_shot_file(
            wildcards.model,
            spec["train"],
            spec["corpus"],
            spec.get("prompts", "simple"),
        ),
        "clusters": [
            clusters_file(wildcards.model, spec["train"], wildcards.clusterer, c)
            for c in sorted(values)
        ],
    }


def sweep_keys():
    """(model, idset, clusterer) of every cluster sweep: each ID set with a cluster_sweep, each
    of its models and clusterers."""
    keys = []
    for idset, spec in IDSETS.items():
        for clusterer in spec.get("cluster_sweep", {}):
            clusterer_spec(clusterer)  # a declared clusterer, or a clear error
            keys += [[model, idset, clusterer] for model in idset_models(idset)]
    return keys


def cluster_sweep_targets():
    return [f"results/{m}/clusters/sweeps/{i}.{c}.tsv" for m, i, c in sweep_keys()]


# --- mine stage (rules/mine.smk)

LABEL_SETS = config.get("label_sets", {})
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


@functools.cache
def dataset_class_names(dataset):
    """clustermine.datasets.class_names_available, asked once per dataset (it may read a list
    file's first line or open a precomputed file)."""
    return class_names_available(DATASETS[dataset])


def has_class_names(dataset):
    """Whether a dataset's class names can be encoded from its index: image folders, file
    lists with a class-name file or name labels. Precomputed embeddings have no index to
    encode from (mining then matches the class names stored in them to the corpus)."""
    return DATASETS[dataset]["type"] != "embeddings" and bool(dataset_class_names(dataset))


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
    if "match_positives_of" in label_set:
        other = label_set["match_positives_of"]
        label_set_spec(other)
        if other == wildcards.labelset:
            raise ValueError(f"config: label_sets.{other}.match_positives_of names itself")
        inputs["match"] = label_set_file(wildcards.model, wildcards.idset, other)
    return inputs


def label_set_miner(wildcards):
    return label_set_spec(wildcards.labelset)["miner"]


def label_set_params(wildcards):
    """The miner's parameters (keys choosing inputs, such as clusterer and C, removed)."""
    return {
        k: v
        for k, v in label_set_spec(wildcards.labelset).items()
        if k not in ("miner", "clusterer", "C", "match_positives_of")
    }


def label_set_num_clusters(wildcards):
    return label_set_spec(wildcards.labelset).get("C")


# --- score stage (rules/score.smk)

METHODS = config.get("methods", {})


def method_spec(method):
    if method not in METHODS:
        raise ValueError(
            f"config: method '{method}' is not declared under methods (declared: {sorted(METHODS)})"
        )
    return METHODS[method]


def method_labels(wildcards):
    """The label-set slug of a method, or None for methods without labels."""
    return method_spec(wildcards.method).get("labels")


def method_score(wildcards):
    return method_spec(wildcards.method)["score"]


def method_params(wildcards):
    """The score's parameters (the keys choosing the score and labels removed)."""
    return {
        k: v
        for k, v in method_spec(wildcards.method).items()
        if k not in ("score", "labels")
    }


# Miners whose positives are Y_GT, the ID class names (as clustermine.mining.NEEDS_CLASS_NAMES).
GROUND_TRUTH_MINERS = ("gt", "gt_aug", "neglabel")


def _check_methods():
    """Every method an ID set runs is declared, names a declared label set (whose clusterer is
    declared), and needs Y_GT only where the ID-train set has class names."""
    for idset in IDSETS:
        for method in idset_methods(idset):
            where = f"config: idsets.{idset}.methods"
            if method not in METHODS:
                raise ValueError(
                    f"{where} names method '{method}', which is not declared under methods "
                    f"(declared: {sorted(METHODS)})"
                )
            labelset = METHODS[method].get("labels")
            if labelset is None:
                continue
            if labelset not in LABEL_SETS:
                raise ValueError(
                    f"config: methods.{method}.labels names label set '{labelset}', which is "
                    f"not declared under label_sets (declared: {sorted(LABEL_SETS)})"
                )
            spec = LABEL_SETS[labelset]
            if spec["miner"] == "clustermine":
                clusterer_spec(spec["clusterer"])
            train = IDSETS[idset]["train"]
            if (
                spec["miner"] in GROUND_TRUTH_MINERS
                and dataset_class_names(train) is False
            ):
                raise ValueError(
                    f"config: method '{method}' of idset '{idset}' uses label set "
                    f"'{labelset}' (miner {spec['miner']}), which needs the ID class names "
                    f"(Y_GT), but the ID-train set '{train}' has none. Give the dataset its "
                    "class names (imagefolder, or a filelist with class_names or name labels), "
                    "or leave this method out of the ID set (label-free: posmine, clustermine)."
                )


def detector_file(model, idset, method):
    return f"results/{model}/detectors/{idset}.{method}.h5"


def scores_file(model, idset, method):
    """One file per detector: the scores of every ID test set and OOD benchmark of its ID set."""
    return f"results/{model}/scores/{idset}.{method}.h5"


def fit_detector_inputs(wildcards):
    spec = idset_spec(wildcards.idset)
    prompts = idset_prompts(wildcards.idset)
    inputs = {
        "train": image_embeddings(wildcards.model, spec["train"]),
        "text": text_embeddings(wildcards.model, spec["corpus"], prompts),
        "labels": [],
        "classes": [],
    }
    labels = method_labels(wildcards)
    if labels:
        label_set_spec(labels)
        inputs["labels"] = [label_set_file(wildcards.model, wildcards.idset, labels)]
        inputs["classes"] = class_names_input(wildcards.model, spec["train"], prompts)
    return inputs


def scored_datasets(wildcards):
    """The datasets a detector scores: its ID set's test sets, then its OOD benchmarks."""
    return list(idset_spec(wildcards.idset).get("test", [])) + idset_benchmarks(wildcards)


def score_inputs(wildcards):
    return {
        "detector": detector_file(wildcards.model, wildcards.idset, wildcards.method),
        "images": [image_embeddings(wildcards.model, d) for d in scored_datasets(wildcards)],
    }


def idset_benchmarks(wildcards):
    benchmarks = idset_spec(wildcards.idset).get("benchmarks", [])
    if not benchmarks:
        raise ValueError(f"config: idsets.{wildcards.idset} names no OOD benchmarks")
    return list(benchmarks) + list(
        idset_spec(wildcards.idset).get("extra_benchmarks", [])
    )


def idset_main_benchmarks(wildcards):
    """The OOD sets averaged in the metrics' mean (extra benchmarks are reported only)."""
    return list(idset_spec(wildcards.idset)["benchmarks"])


def evaluate_inputs(wildcards):
    inputs = {
        "scores": scores_file(wildcards.model, wildcards.idset, wildcards.method),
        "labels": [],
    }
    labels = method_labels(wildcards)
    if labels:
        inputs["labels"] = [label_set_file(wildcards.model, wildcards.idset, labels)]
    return inputs


def fpr_convention(wildcards):
    return idset_spec(wildcards.idset).get("fpr_convention", "clip")


# --- report stage (rules/report.smk)

REPORT = config.get("report", {})
# As clustermine.tables.TABLES and clustermine.plots.PLOTS (repeated so that parsing the
# workflow never imports pandas or matplotlib; a unit test keeps them equal).
TABLE_NAMES = [
    "ood_benchmarks",
    "id_shift",
    "corpora",
    "positives",
    "all_benchmarks",
    "plp",
]
PLOT_NAMES = [
    "auroc_by_model",
    "id_shift",
    "label_quality",
    "sensitivity",
    "cluster_analysis",
    "prompts",
]
TABLE_FORMATS = ["tsv", "md", "html"]


def idset_models(idset):
    """Models an ID set runs for: its `models` list, else every model."""
    return list(IDSETS[idset].get("models", MODELS))


def idset_methods(idset):
    """Methods an ID set runs: its `methods` list, else every method."""
    return list(IDSETS[idset].get("methods", config.get("methods", {})))


def metric_files():
    """results/{model}/metrics/{idset}.{method}.{testset}.json for everything enabled."""
    return [
        f"results/{model}/metrics/{idset}.{method}.{testset}.json"
        for idset, spec in IDSETS.items()
        for model in idset_models(idset)
        for method in idset_methods(idset)
        for testset in spec.get("test", [])
    ]


def label_keys():
    """(model, idset, label set) of the label sets the main model uses in the main ID set
    (the label-quality figure shows those; other label sets are summarised by the metrics).
    """
    idset, model = report_main_idset(), report_main_model()
    if idset is None:
        return []
    methods = config.get("methods", {})
    used = [methods.get(m, {}).get("labels") for m in idset_methods(idset)]
    return [[model, idset, ls] for ls in dict.fromkeys(used) if ls]


def label_files():
    return [f"results/{m}/labels/{i}.{ls}.tsv" for m, i, ls in label_keys()]


def report_main_idset():
    main = REPORT.get("main_idset", next(iter(IDSETS), None))
    if main is not None and main not in IDSETS:
        raise ValueError(
            f"config: report.main_idset '{main}' is not declared under idsets "
            f"(declared: {sorted(IDSETS)})"
        )
    return main


def report_main_model():
    idset = report_main_idset()
    models = idset_models(idset) if idset else list(MODELS)
    main = REPORT.get("main_model", models[0] if models else None)
    if main is not None and main not in MODELS:
        raise ValueError(
            f"config: report.main_model '{main}' is not declared under models "
            f"(declared: {sorted(MODELS)})"
        )
    return main


def sweep_files():
    return cluster_sweep_targets()


def report_settings(wildcards):
    """What the tables and figures need to know of the config (changes rerun them)."""
    label_sets = config.get("label_sets", {})
    methods = {}
    for slug, spec in config.get("methods", {}).items():
        methods[slug] = {
            **spec,
            "label_set": dict(label_sets.get(spec.get("labels"), {})),
        }
    idsets = {
        slug: {
            "train": spec["train"],
            "test": list(spec.get("test", [])),
            "corpus": spec["corpus"],
            "prompts": spec.get("prompts", "simple"),
            "benchmarks": list(spec.get("benchmarks", [])),
            "extra_benchmarks": list(spec.get("extra_benchmarks", [])),
            "methods": idset_methods(slug),
            "models": idset_models(slug),
        }
        for slug, spec in IDSETS.items()
    }
    return {
        "models": list(MODELS),
        "main_model": report_main_model(),
        "main_idset": report_main_idset(),
        "idsets": idsets,
        "methods": methods,
    }


def report_label_keys(wildcards):
    return label_keys()


def report_sweep_keys(wildcards):
    return sweep_keys()


def table_outputs():
    outputs = {}
    for name in TABLE_NAMES:
        for fmt in TABLE_FORMATS:
            path = f"results/tables/{name}.{fmt}"
            if fmt == "md":
                outputs[f"{name}_{fmt}"] = path
                continue
            outputs[f"{name}_{fmt}"] = report(
                path,
                caption=f"../report/table_{name}.rst",
                category="Tables",
                subcategory="TSV downloads" if fmt == "tsv" else "Tables",
                labels={"table": name, "format": fmt},
            )
    return outputs


def plot_outputs():
    return {
        name: report(
            f"results/plots/{name}.png",
            caption=f"../report/plot_{name}.rst",
            category="Figures",
            labels={"figure": name},
        )
        for name in PLOT_NAMES
    }


def report_targets():
    if not IDSETS:
        return []
    return (
        [f"results/tables/{n}.{f}" for n in TABLE_NAMES for f in TABLE_FORMATS]
        + ["results/tables/metrics_long.tsv"]
        + [f"results/plots/{n}.png" for n in PLOT_NAMES]
    )


_check_methods()
