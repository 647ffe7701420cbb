"""The start-up checks of a config (:meth:`WorkflowConfig.check`): every reference between
config sections resolves, and every method can get the inputs its plugins need; the first
problem is raised as a ConfigError naming its key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from clustermine import catalog
from clustermine.config.errors import ConfigError
from clustermine.config.loading import ID_SET_DATASET_KEYS

if TYPE_CHECKING:  # the checks are called by WorkflowConfig.check
    from clustermine.config.workflow import WorkflowConfig


def check_config(cfg: WorkflowConfig) -> None:
    check_datasets(cfg)
    check_idsets(cfg)
    check_plugins(cfg)
    check_deployments(cfg)
    cfg.main_model()


# Config sections by the role of a key that names one of their entries.
REFERENCED = {"label_set": "label set", "clusterer": "clusterer", "idset": "idset"}


def check_references(
    cfg: WorkflowConfig,
    plugin: catalog.Plugin,
    entry: Mapping[str, Any],
    where: str,
    slug: str = "",
) -> None:
    """Every key of ``entry`` that names another config entry (by its role) names a
    declared one, and a label set never names itself."""
    sections = {"label set": cfg.label_sets, "clusterer": cfg.clusterers,
                "idset": cfg.idsets}  # fmt: skip
    for role, what in REFERENCED.items():
        for key, value in plugin.references(entry, role).items():
            if role == "label_set" and value == slug:
                raise ConfigError(f"config: {where}.{key} names itself")
            cfg.lookup(sections[what], value, f"{where}.{key}", what)


def check_datasets(cfg: WorkflowConfig) -> None:
    for ds, spec in cfg.datasets.items():
        if spec["type"] == "embeddings":
            for model in spec.get("paths", {}):
                cfg.lookup(cfg.models, model, f"datasets.{ds}.paths", "model")
    for corpus, spec in cfg.corpora.items():
        if spec["type"] == "embeddings":
            for model in spec.get("paths", {}):
                cfg.lookup(cfg.models, model, f"corpora.{corpus}.paths", "model")
        for ds in spec.get("add_class_names_of", []):
            cfg.lookup(cfg.datasets, ds, f"corpora.{corpus}.add_class_names_of", "dataset")


def check_idsets(cfg: WorkflowConfig) -> None:
    for idset, spec in cfg.idsets.items():
        for key in ID_SET_DATASET_KEYS:
            value = spec.get(key) or []
            for ds in [value] if isinstance(value, str) else value:
                cfg.lookup(cfg.datasets, ds, f"idsets.{idset}.{key}", "dataset")
        cfg.lookup(cfg.corpora, spec["corpus"], f"idsets.{idset}.corpus", "corpus")
        for model in spec.get("models") or []:
            cfg.lookup(cfg.models, model, f"idsets.{idset}.models", "model")
        for method in cfg.idset_methods(idset):
            cfg.lookup(cfg.methods, method, f"idsets.{idset}.methods", "method")
        if cfg.idset_methods(idset) and not spec.get("benchmarks"):
            raise ConfigError(
                f"config: idsets.{idset} runs methods but names no OOD benchmarks "
                "(idsets.<slug>.benchmarks)"
            )
        if cfg.idset_methods(idset) and not cfg.idset_tests(idset):
            raise ConfigError(
                f"config: idsets.{idset} runs methods but names no ID test set "
                "(idsets.<slug>.test): nothing would be scored against the benchmarks"
            )
        for group, members in (spec.get("benchmark_groups") or {}).items():
            outside = sorted(set(members) - set(cfg.idset_benchmarks(idset)))
            if outside:
                raise ConfigError(
                    f"config: idsets.{idset}.benchmark_groups.{group} names {outside}, "
                    "which are not benchmarks of the ID set"
                )
        for clusterer in spec.get("cluster_sweep") or {}:
            cfg.lookup(
                cfg.clusterers, clusterer, f"idsets.{idset}.cluster_sweep", "clusterer"
            )


def check_plugins(cfg: WorkflowConfig) -> None:
    for slug, spec in cfg.clusterers.items():
        plugin, _ = cfg.clusterer(slug)
        where = f"clusterers.{slug}"
        check_references(cfg, plugin, spec, where)
        for key, names_from in plugin.references(spec).items():
            for label_set in cfg.label_set_chain(names_from):
                if (cfg.label_set_clustering(label_set) or (None,))[0] == slug:
                    raise ConfigError(
                        f"config: {where}.{key} '{names_from}' is mined from clusters of "
                        f"'{slug}' itself (label set '{label_set}'): a cycle"
                    )
    for slug in cfg.label_sets:
        plugin, _, inputs = cfg.label_set(slug)
        for key in (p.name for p in plugin.input_keys if p.required):
            if key not in inputs:
                raise ConfigError(
                    f"config: label_sets.{slug} (miner {plugin.name}) needs '{key}'"
                )
        check_references(cfg, plugin, inputs, f"label_sets.{slug}", slug)
    for slug, spec in cfg.methods.items():
        if spec.get("labels") is not None:
            cfg.lookup(cfg.label_sets, spec["labels"], f"methods.{slug}.labels",
                         "label set")  # fmt: skip
    for idset in cfg.idsets:
        train = cfg.idset(idset)["train"]
        for method in cfg.idset_methods(idset):
            labels = cfg.methods[method].get("labels")
            if labels is None:
                continue
            for label_set in cfg.label_set_chain(labels):
                plugin, _, _ = cfg.label_set(label_set)
                corpus = cfg.idset(idset)["corpus"]
                precomputed = cfg.corpora[corpus]["type"] == "embeddings"
                if plugin.has("conjugated_labels") and precomputed:
                    raise ConfigError(
                        f"config: method '{method}' of idset '{idset}' uses label set "
                        f"'{label_set}' (miner {plugin.name}), which conjugates the "
                        f"adjectives of the corpus's words, but corpus '{corpus}' is a "
                        "file of precomputed embeddings, whose words the workflow does not "
                        "build: use a wordnet or wordlist corpus"
                    )
                if plugin.has("class_names") and cfg.has_class_names(train) is False:
                    raise ConfigError(
                        f"config: method '{method}' of idset '{idset}' uses label set "
                        f"'{label_set}' (miner {plugin.name}), which needs the ID class "
                        f"names (Y_GT), but the ID-train set '{train}' has none. Give the "
                        "dataset its class names (imagefolder, or a filelist with "
                        "class_names or name labels), or leave this method out of the ID "
                        "set (label-free miners: "
                        f"{', '.join(n for n, p in catalog.MINERS.items() if not p.has('class_names'))})."
                    )


def check_deployments(cfg: WorkflowConfig) -> None:
    """A deployment re-mines a detector the config fits, from declared datasets."""
    for slug, spec in cfg.deployments.items():
        where = f"deployments.{slug}"
        cfg.lookup(cfg.idsets, spec["idset"], f"{where}.idset", "idset")
        if spec["method"] not in cfg.idset_methods(spec["idset"]):
            raise ConfigError(
                f"config: {where}.method '{spec['method']}' is not a method of idset "
                f"'{spec['idset']}' (its methods: {cfg.idset_methods(spec['idset'])})"
            )
        for ds in spec["images"]:
            cfg.lookup(cfg.datasets, ds, f"{where}.images", "dataset")
        plugin = cfg.method(spec["method"])[0]
        extra = sorted(plugin.needs - catalog.LABEL_TEXT_NEEDS)
        if extra:
            raise ConfigError(
                f"config: {where}.method '{spec['method']}' (score {plugin.name}) also needs "
                f"{', '.join(extra)}, which deployment images do not give: re-mine a method "
                "whose score reads the label texts alone"
            )
