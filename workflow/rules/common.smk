# Config loading and every start-up check, global wildcard constraints, and the few helpers all
# stages share. The checks live in the library (clustermine.config), unit-tested without
# Snakemake; each stage's own helper functions sit beside that stage's rules.
import os
import re

from snakemake.exceptions import WorkflowError

from clustermine import catalog
from clustermine.config import WorkflowConfig, check_config_files, validate_config
from clustermine.datasets import class_names_available
from clustermine.knn_search import GRAPH_PATTERN
from clustermine.staging import note_staging
from clustermine.weights import is_local_checkpoint

check_config_files(workflow.overwrite_configfiles or ["config/config.yaml"])
validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
CFG = WorkflowConfig(config, class_names_available)
CFG.apply_data_root()
CFG.check()
# Where a job's inputs are staged to node-local scratch (docs/slurm.md), its outputs record the
# workflow paths of the files it read, not those of its copies (clustermine.staging).
note_staging(
    workflow.storage_settings.default_storage_provider,
    workflow.storage_settings.local_storage_prefix,
)

MODELS, DATASETS, CORPORA, IDSETS = CFG.models, CFG.datasets, CFG.corpora, CFG.idsets
SLUG = "[A-Za-z0-9_-]+"
# The features wildcard: local patch features, or a corrupted view.
FEATURES_PATTERN = r"local|views/[a-z_]+-[1-5]"


wildcard_constraints:
    model=SLUG,
    dataset=SLUG,
    corpus=SLUG,
    prompts=SLUG,
    idset=SLUG,
    method=SLUG,
    labelset=SLUG,
    clusterer=SLUG,
    shard=r"\d+",
    nshards=r"\d+",
    C=r"\d+",
    k=r"\d+",
    graph=GRAPH_PATTERN,


# --- speed settings: resources, never params, so changing them reruns nothing ------------------
# Settings that are the same for every job are values, not functions (Snakemake inspects and
# calls a function once per job and directive).

DEVICE = CFG.device()
BUDGET_MB = CFG.memory_budget_mb()
# Where the weights lie changes only where they are read from: a resource, not a param.
WEIGHTS_CACHE = CFG.weights_cache()
LOADER_WORKERS = max(1, CFG.loader_workers())
# A gate, not a parameter: it decides whether a run fails, never what a finished file holds
# (docs/workflow.md). Resources are integers or strings, so it travels as a string.
MAX_UNREADABLE = str(CFG.max_unreadable_fraction())


def size_mb(files):
    """Megabytes of the files that exist (those still to be made count 0). One os.stat each:
    Snakemake's own ``input.size_mb`` runs an event loop per call."""
    total = 0
    for f in files:
        try:
            total += os.stat(f).st_size
        except OSError:
            pass
    return total / 2**20


def _rows_folder(name, **patterns):
    # The folder of PATHS[name] as a pattern, its wildcards given as patterns.
    folder = re.escape(os.path.dirname(PATHS[name]))
    for key, pattern in patterns.items():
        folder = folder.replace(re.escape("{%s}" % key), f"(?:{pattern})")
    return f"{folder}/"


# The files of image rows the workflow makes (embeddings and other features, with their
# shards); a precomputed file is stored as it was given.
IMAGE_ROWS_FILE = re.compile(
    "|".join(
        [
            _rows_folder("images", model="[^/]+"),
            _rows_folder("features", model="[^/]+", features=FEATURES_PATTERN),
        ]
    )
)


def read_mb(wildcards, files):
    """Megabytes of the files once read: readers return float32, so the image rows of a
    model stored as float16 take twice their size in memory."""
    total = size_mb(files)
    if model_storage(wildcards) == "float16":
        total += size_mb(f for f in files if IMAGE_ROWS_FILE.match(f))
    return total


def held_mem_mb(size_mb, attempt, copies=2):
    # What a job holding ``copies`` times ``size_mb`` of inputs asks for: plus the similarity
    # blocks (the memory budget) and some slack, more at each attempt.
    return int((copies * size_mb + CFG.memory_budget_mb() + 2000) * attempt)


def embeddings_mem_mb(wildcards, input, attempt):
    # Inputs are read whole.
    return held_mem_mb(read_mb(wildcards, input), attempt)


# A job that reads its image file in row blocks keeps per row only its results (zero-shot
# top-5 and the labels: 68 bytes a row, against 1 to 4 kB a stored row): a quarter of the
# file bounds them.
STREAMED_FRACTION = 0.25


def streamed_mem_mb(wildcards, input, attempt):
    # The image file read in blocks (the memory budget bounds a block), the rest whole
    # (docs/performance.md, "Memory of every job").
    held = [f for f in input if f != input.images]
    streamed = STREAMED_FRACTION * size_mb([input.images]) / 2
    return held_mem_mb(read_mb(wildcards, held) + streamed, attempt)


# --- models and embedding files ---------------------------------------------------------------


def model_checkpoint(wildcards):
    """A local checkpoint is an input, so a rule of the workflow may build it (the demo)."""
    pretrained = MODELS[wildcards.model].get("pretrained")
    return [pretrained] if is_local_checkpoint(pretrained) else []


def model_params(wildcards):
    """What makes a model's embeddings: architecture, weights and precision."""
    spec = MODELS[wildcards.model]
    return {
        "arch": spec["arch"],
        "pretrained": spec.get("pretrained"),
        "precision": spec.get("precision", "auto"),
    }


def model_storage(wildcards):
    """How a model's image embeddings are stored (float32 or float16): only the image files'
    rules read it, so changing it leaves the text embeddings as they are."""
    return MODELS[wildcards.model].get("storage", "float32")


def _precomputed(section, slug, model, what):
    paths = section[slug].get("paths", {})
    if model not in paths:
        raise ValueError(
            f"config: {what}.{slug} is precomputed but has no file for model '{model}' "
            f"under paths"
        )
    return paths[model]


def image_embeddings(model, dataset):
    """A dataset's image embeddings for one model (precomputed files are used as they are)."""
    if DATASETS[dataset]["type"] == "embeddings":
        return _precomputed(DATASETS, dataset, model, "datasets")
    return path("images", model=model, dataset=dataset)


def image_features(model, dataset, features):
    """A dataset's other image features for one model: ``local`` or ``views/<view>``."""
    if DATASETS[dataset]["type"] == "embeddings":
        raise WorkflowError(
            f"dataset {dataset!r} is given as precomputed embeddings, but a method scoring it "
            f"needs its {features} features, which are encoded from images: give the dataset "
            "as images, or leave the method out of this ID set"
        )
    return path("features", model=model, dataset=dataset, features=features)


def precomputed_checks(*datasets):
    """The data checks of the precomputed embedding files among ``datasets``: a job reading
    such a file needs its check, as an index job needs the check of its image folder, so no
    job reads a dataset before its check has passed."""
    return [
        path("data_check", dataset=ds)
        for ds in dict.fromkeys(datasets)
        if ds is not None and DATASETS[ds]["type"] == "embeddings"
    ]


def text_embeddings(model, corpus, prompts):
    if CORPORA[corpus]["type"] == "embeddings":
        return _precomputed(CORPORA, corpus, model, "corpora")
    return path("text", model=model, corpus=corpus, prompts=prompts)


def class_names_input(model, dataset, prompts):
    """The text embeddings of a dataset's own class names (Y_GT), when it has an index to
    encode them from (precomputed image files carry their class names instead)."""
    if DATASETS[dataset]["type"] == "embeddings" or not CFG.has_class_names(dataset):
        return []
    return [path("class_text", model=model, dataset=dataset, prompts=prompts)]


def all_targets():
    """Everything the config enables (each stage's targets are listed beside its rules)."""
    return (
        embedding_targets()
        + cluster_sweep_targets()
        + detector_files()
        + metric_files()
        + deployment_files()
        + report_targets()
        + demo_targets()
    )
