"""The validated config as the workflow reads it (:class:`WorkflowConfig`): the questions the
workflow's input functions ask, answered from the config and the plugin catalog (which
parameter of a plugin names a label set, a clusterer, C, ... is the parameter's role in the
catalog), and every start-up check, each error naming its key."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

from clustermine import catalog
from clustermine.config.errors import ConfigError
from clustermine.config.loading import load_config_file, merge
from clustermine.config.schema import validate_config


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys in sorted order, recursively (lists keep theirs):
    the same declaration written in another key order gives the same value, and the same
    ``repr``, which is what Snakemake compares to decide whether params changed."""
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def _canonical_entries(config: dict[str, Any]) -> None:
    """Put every entry of every section (a model, a dataset, a label set, ...) and every
    settings section in :func:`canonical` order, in place. Every ``params:`` value of the
    workflow is built from these entries, so none depends on how the YAML was ordered; the
    order of the entries within a section (the report's row order) is kept."""
    for key, value in config.items():
        if key in SECTION_OF:
            for slug in list(value or {}):
                value[slug] = canonical(value[slug])
        elif isinstance(value, Mapping):
            config[key] = canonical(value)


DATA_ROOT_KEYS = {"datasets": ("root", "list", "class_map", "class_names"), "corpora": ("path",)}
# The keys of an ID set that name its datasets.
ID_SET_DATASET_KEYS = ("train", "test", "calibration", "benchmarks", "extra_benchmarks")


class WorkflowConfig:
    """A validated config dictionary and the questions the workflow asks of it.

    ``class_names_of(dataset_spec)`` tells whether a dataset carries class names (True,
    False, or None when that cannot be told before the data exists); the workflow passes
    :func:`clustermine.datasets.class_names_available`.
    """

    def __init__(
        self,
        config: dict[str, Any],
        class_names_of: Callable[[Mapping[str, Any]], bool | None] | None = None,
    ) -> None:
        self.raw = config
        _canonical_entries(config)
        self.models: dict[str, dict] = config.get("models") or {}
        self.datasets: dict[str, dict] = config.get("datasets") or {}
        self.corpora: dict[str, dict] = config.get("corpora") or {}
        self.idsets: dict[str, dict] = config.get("idsets") or {}
        self.clusterers: dict[str, dict] = config.get("clusterers") or {}
        self.label_sets: dict[str, dict] = config.get("label_sets") or {}
        self.methods: dict[str, dict] = config.get("methods") or {}
        self.seed = int(config.get("seed", 0))
        self._class_names_of = class_names_of
        self._class_names: dict[str, bool | None] = {}
        self._data_root_applied = False

    # --- paths ----------------------------------------------------------------------------

    def apply_data_root(self) -> None:
        """Join relative dataset and word-list paths to ``data_root`` (once)."""
        root = self.raw.get("data_root") or ""
        if not root or self._data_root_applied:
            return
        for section, keys in DATA_ROOT_KEYS.items():
            for spec in (self.raw.get(section) or {}).values():
                for key in keys:
                    if key in spec:
                        spec[key] = os.path.join(root, spec[key])
        self._data_root_applied = True

    # --- lookups with errors naming the key ---------------------------------------------------

    def _lookup(self, section: dict, slug: str, where: str, what: str) -> dict:
        if slug not in section:
            name = next(k for k, v in SECTION_OF.items() if v == what)
            raise ConfigError(
                f"config: {where} names {what} '{slug}', which is not declared under "
                f"{name} (declared: {sorted(section)})"
            )
        return section[slug]

    def idset(self, slug: str) -> dict:
        return self._lookup(self.idsets, slug, "a target", "idset")

    def idset_models(self, idset: str) -> list[str]:
        """Models an ID set runs for: its ``models`` list, else every model."""
        return list(self.idset(idset).get("models") or self.models)

    def idset_methods(self, idset: str) -> list[str]:
        """Methods an ID set runs: its ``methods`` list, else every declared method."""
        methods = self.idset(idset).get("methods")
        return list(self.methods if methods is None else methods)

    def idset_prompts(self, idset: str) -> str:
        return self.idset(idset)["prompts"]

    def idset_tests(self, idset: str) -> list[str]:
        return list(self.idset(idset).get("test") or [])

    def idset_calibration(self, idset: str) -> str | None:
        """The held-out ID set whose scores calibrate the ID set's detectors (thresholds and
        p-values of new images): ``calibration``, else the first test set; None for none."""
        spec = self.idset(idset)
        if "calibration" in spec:
            return spec["calibration"]
        tests = self.idset_tests(idset)
        return tests[0] if tests else None

    def idset_benchmarks(self, idset: str, extra: bool = True) -> list[str]:
        spec = self.idset(idset)
        return list(spec.get("benchmarks") or []) + (
            list(spec.get("extra_benchmarks") or []) if extra else []
        )

    def idset_datasets(self, idset: str) -> list[str]:
        """The train set, the test sets, the calibration set and every benchmark of an ID set."""
        calibration = self.idset_calibration(idset)
        tests = self.idset_tests(idset)
        extra = [calibration] if calibration and calibration not in tests else []
        return [self.idset(idset)["train"], *tests, *extra, *self.idset_benchmarks(idset)]

    def idset_roles(self, idset: str) -> dict[str, str | list[str]]:
        """The datasets of an ID set by role (``ID_SET_DATASET_KEYS``; the calibration set
        resolved), as the check for benchmarks sharing files with their ID set reads them."""
        roles = {
            "train": self.idset(idset)["train"],
            "test": self.idset_tests(idset),
            "calibration": self.idset_calibration(idset),
            "benchmarks": self.idset_benchmarks(idset, extra=False),
            "extra_benchmarks": self.idset(idset).get("extra_benchmarks") or [],
        }
        return {key: value for key, value in roles.items() if value}

    def used_datasets(self) -> list[str]:
        if not self.idsets:
            return sorted(self.datasets)
        return sorted({d for idset in self.idsets for d in self.idset_datasets(idset)})

    def clusterer(self, slug: str) -> tuple[catalog.Plugin, dict]:
        """The plugin and parameters of a ``clusterers`` entry (seeded by the global seed)."""
        spec = self._lookup(self.clusterers, slug, "a label set or cluster sweep", "clusterer")
        plugin = catalog.clusterer(spec["method"])
        return plugin, self._seeded(plugin, plugin.params_of(spec))

    def _seeded(self, plugin: catalog.Plugin, params: dict) -> dict:
        """``params`` with the plugin's seed (its parameter of role seed) defaulting to the
        global seed."""
        seed = plugin.with_role("seed")
        if seed is not None:
            params.setdefault(seed.name, self.seed)
        return params

    def knn_k(self, clusterer: str) -> int | None:
        plugin, params = self.clusterer(clusterer)
        return plugin.knn_k(params)

    def clusterer_label_set(self, clusterer: str, dataset: str) -> tuple[str, str] | None:
        """(ID set, label set) whose positives a clusterer needing a ``label_set`` reads when
        it clusters ``dataset``: ``names_from`` in ``idset`` (default: the one ID set whose
        train set is ``dataset``); None for other clusterers."""
        plugin, _ = self.clusterer(clusterer)
        if not plugin.has("label_set"):
            return None
        spec = self.clusterers[clusterer]
        (key, label_set), = plugin.references(spec).items()
        idset = plugin.value_of("idset", spec)
        if idset is None:
            owners = [k for k, v in self.idsets.items() if v["train"] == dataset]
            if len(owners) != 1:
                idset_key = plugin.with_role("idset").name
                raise ConfigError(
                    f"config: clusterers.{clusterer} needs the ID set of its label set "
                    f"'{label_set}' ({key}) for dataset '{dataset}'; "
                    f"{'several' if owners else 'no'} ID sets train on it ({owners}): set "
                    f"clusterers.{clusterer}.{idset_key}"
                )
            idset = owners[0]
        return idset, label_set

    def label_set(self, slug: str) -> tuple[catalog.Plugin, dict, dict]:
        """(plugin, parameters, input-choosing keys) of a ``label_sets`` entry (a seed
        parameter defaults to the global seed)."""
        spec = self._lookup(self.label_sets, slug, "a method", "label set")
        plugin = catalog.miner(spec["miner"])
        inputs = {k: spec[k] for k in plugin.input_names if k in spec}
        return plugin, self._seeded(plugin, plugin.params_of(spec)), inputs

    def method(self, slug: str) -> tuple[catalog.Plugin, dict, str | None]:
        """(plugin, parameters, label-set slug or None) of a ``methods`` entry; a ``seed``
        parameter defaults to the global seed."""
        spec = self._lookup(self.methods, slug, "an ID set", "method")
        plugin = catalog.score(spec["score"])
        params = {k: v for k, v in spec.items() if k not in ("score", "labels")}
        return plugin, self._seeded(plugin, params), spec.get("labels")

    def label_set_clustering(self, slug: str) -> tuple[str, int] | None:
        """(clusterer slug, C) of the cluster file a label set's miner votes on, None for a
        miner that needs no clusters."""
        plugin, _, inputs = self.label_set(slug)
        if not plugin.has("clusters"):
            return None
        return inputs[plugin.with_role("clusterer").name], int(
            inputs[plugin.with_role("num_clusters").name]
        )

    def label_set_density_k(self, slug: str) -> int | None:
        """k of the text-density file a label set's miner reads, None for one that reads none."""
        plugin, params, _ = self.label_set(slug)
        if not plugin.has("text_density"):
            return None
        return int(plugin.value_of("density_k", params))

    def label_set_conjugated_seed(self, slug: str) -> int | None:
        """The seed of the conjugated labels a label set's miner reads (its parameter of role
        seed), None for a miner that reads none."""
        plugin, params, _ = self.label_set(slug)
        if not plugin.has("conjugated_labels"):
            return None
        return int(plugin.value_of("seed", params))

    def label_set_references(self, slug: str) -> dict[str, str]:
        """{key: label-set slug} of the label sets a label set's inputs name."""
        plugin, _, inputs = self.label_set(slug)
        return plugin.references(inputs)

    def label_set_files(self, slug: str) -> dict[str, str]:
        """{key: path} of the user files (keys of role ``file``) a label set's inputs name."""
        plugin, _, inputs = self.label_set(slug)
        return plugin.references(inputs, "file")

    def clusterings(self, idset: str) -> list[tuple[str, int]]:
        """(clusterer, C) of every clustering of an ID set's train images the config makes:
        those its methods' label sets vote on, then those of its cluster sweep, each once."""
        used: dict[tuple[str, int], None] = {}
        for method in self.idset_methods(idset):
            labels = self.method(method)[2]
            for slug in self.label_set_chain(labels) if labels else []:
                clustering = self.label_set_clustering(slug)
                if clustering is not None:
                    used[clustering] = None
        for clusterer, values in (self.idset(idset).get("cluster_sweep") or {}).items():
            used.update({(clusterer, int(c)): None for c in values})
        return list(used)

    def label_set_chain(self, slug: str) -> list[str]:
        """A label set and every label set its inputs name (``match_positives_of``, ...)."""
        chain, pending = [], [slug]
        while pending:
            current = pending.pop()
            if current in chain:
                continue
            chain.append(current)
            pending += list(self.label_set_references(current).values())
        return chain

    # Config sections by the role of a key that names one of their entries.
    _REFERENCED = {"label_set": "label set", "clusterer": "clusterer", "idset": "idset"}

    def _check_references(
        self, plugin: catalog.Plugin, entry: Mapping[str, Any], where: str, slug: str = ""
    ) -> None:
        """Every key of ``entry`` that names another config entry (by its role) names a
        declared one, and a label set never names itself."""
        sections = {"label set": self.label_sets, "clusterer": self.clusterers,
                    "idset": self.idsets}  # fmt: skip
        for role, what in self._REFERENCED.items():
            for key, value in plugin.references(entry, role).items():
                if role == "label_set" and value == slug:
                    raise ConfigError(f"config: {where}.{key} names itself")
                self._lookup(sections[what], value, f"{where}.{key}", what)

    def has_class_names(self, dataset: str) -> bool | None:
        """Whether a dataset carries class names (asked once per dataset)."""
        if dataset not in self._class_names:
            if self._class_names_of is None:
                self._class_names[dataset] = None
            else:
                self._class_names[dataset] = self._class_names_of(self.datasets[dataset])
        return self._class_names[dataset]

    # --- speed settings (never parameters: changing them reruns nothing) -----------------

    def batch_size(self, model: str) -> int:
        return int(self.models[model]["batch_size"])

    @property
    def encode(self) -> dict:
        return self.raw["encode"]

    @property
    def compute(self) -> dict:
        return self.raw["compute"]

    def loader_workers(self) -> int:
        return int(self.encode["num_workers"])

    def max_unreadable_fraction(self) -> float:
        return float(self.encode["max_unreadable_fraction"])

    def max_image_pixels(self) -> int | None:
        """Not a speed setting: it decides which images an embedding file holds (None: the
        library's default, clustermine.images.DEFAULT_MAX_PIXELS)."""
        value = self.encode.get("max_image_pixels")
        return None if value is None else int(value)

    def device(self) -> str:
        return str(self.compute["device"])

    def weights_cache(self) -> str:
        """Folder of the fetched pretrained weights (clustermine.weights)."""
        from clustermine.weights import DEFAULT_CACHE

        return str(self.raw.get("weights_cache") or DEFAULT_CACHE)

    def memory_budget_mb(self) -> int:
        return int(self.compute["memory_budget_mb"])

    # --- report ---------------------------------------------------------------------------

    @property
    def report(self) -> dict:
        return self.raw.get("report") or {}

    def main_idset(self) -> str | None:
        main = self.report.get("main_idset", next(iter(self.idsets), None))
        if main is not None and main not in self.idsets:
            raise ConfigError(
                f"config: report.main_idset '{main}' is not declared under idsets "
                f"(declared: {sorted(self.idsets)})"
            )
        return main

    def main_model(self) -> str | None:
        idset = self.main_idset()
        models = self.idset_models(idset) if idset else list(self.models)
        main = self.report.get("main_model", models[0] if models else None)
        if main is not None and main not in self.models:
            raise ConfigError(
                f"config: report.main_model '{main}' is not declared under models "
                f"(declared: {sorted(self.models)})"
            )
        return main

    def report_settings(self) -> dict[str, Any]:
        """The part of the config the report's tables and figures read
        (:class:`clustermine.report_settings.ReportSettings`)."""
        methods = {
            slug: {**spec, "label_set": dict(self.label_sets.get(spec.get("labels"), {}))}
            for slug, spec in self.methods.items()
        }
        idsets = {
            slug: {
                "train": spec["train"],
                "test": self.idset_tests(slug),
                "corpus": spec["corpus"],
                "prompts": self.idset_prompts(slug),
                "benchmarks": self.idset_benchmarks(slug, extra=False),
                "extra_benchmarks": list(spec.get("extra_benchmarks") or []),
                "benchmark_groups": dict(spec.get("benchmark_groups") or {}),
                "fpr_convention": spec["fpr_convention"],
                "methods": self.idset_methods(slug),
                "models": self.idset_models(slug),
            }
            for slug, spec in self.idsets.items()
        }
        return {
            "models": list(self.models),
            "main_model": self.main_model(),
            "main_idset": self.main_idset(),
            "idsets": idsets,
            "methods": methods,
        }

    # --- start-up checks ------------------------------------------------------------------

    def check(self) -> None:
        """Every reference between config sections resolves, and every method can get the
        inputs its plugins need; the first problem is raised, naming its key."""
        self._check_datasets()
        self._check_idsets()
        self._check_plugins()
        self.main_model()

    def _check_datasets(self) -> None:
        for ds, spec in self.datasets.items():
            if spec["type"] == "embeddings":
                for model in spec.get("paths", {}):
                    self._lookup(self.models, model, f"datasets.{ds}.paths", "model")
        for corpus, spec in self.corpora.items():
            if spec["type"] == "embeddings":
                for model in spec.get("paths", {}):
                    self._lookup(self.models, model, f"corpora.{corpus}.paths", "model")
            for ds in spec.get("add_class_names_of", []):
                self._lookup(self.datasets, ds, f"corpora.{corpus}.add_class_names_of", "dataset")

    def _check_idsets(self) -> None:
        for idset, spec in self.idsets.items():
            for key in ID_SET_DATASET_KEYS:
                value = spec.get(key) or []
                for ds in [value] if isinstance(value, str) else value:
                    self._lookup(self.datasets, ds, f"idsets.{idset}.{key}", "dataset")
            self._lookup(self.corpora, spec["corpus"], f"idsets.{idset}.corpus", "corpus")
            for model in spec.get("models") or []:
                self._lookup(self.models, model, f"idsets.{idset}.models", "model")
            for method in self.idset_methods(idset):
                self._lookup(self.methods, method, f"idsets.{idset}.methods", "method")
            if self.idset_methods(idset) and not spec.get("benchmarks"):
                raise ConfigError(
                    f"config: idsets.{idset} runs methods but names no OOD benchmarks "
                    "(idsets.<slug>.benchmarks)"
                )
            if self.idset_methods(idset) and not self.idset_tests(idset):
                raise ConfigError(
                    f"config: idsets.{idset} runs methods but names no ID test set "
                    "(idsets.<slug>.test): nothing would be scored against the benchmarks"
                )
            for group, members in (spec.get("benchmark_groups") or {}).items():
                outside = sorted(set(members) - set(self.idset_benchmarks(idset)))
                if outside:
                    raise ConfigError(
                        f"config: idsets.{idset}.benchmark_groups.{group} names {outside}, "
                        "which are not benchmarks of the ID set"
                    )
            for clusterer in spec.get("cluster_sweep") or {}:
                self._lookup(
                    self.clusterers, clusterer, f"idsets.{idset}.cluster_sweep", "clusterer"
                )

    def _check_plugins(self) -> None:
        for slug, spec in self.clusterers.items():
            plugin, _ = self.clusterer(slug)
            where = f"clusterers.{slug}"
            self._check_references(plugin, spec, where)
            for key, names_from in plugin.references(spec).items():
                for label_set in self.label_set_chain(names_from):
                    if (self.label_set_clustering(label_set) or (None,))[0] == slug:
                        raise ConfigError(
                            f"config: {where}.{key} '{names_from}' is mined from clusters of "
                            f"'{slug}' itself (label set '{label_set}'): a cycle"
                        )
        for slug in self.label_sets:
            plugin, _, inputs = self.label_set(slug)
            for key in (p.name for p in plugin.input_keys if p.required):
                if key not in inputs:
                    raise ConfigError(
                        f"config: label_sets.{slug} (miner {plugin.name}) needs '{key}'"
                    )
            self._check_references(plugin, inputs, f"label_sets.{slug}", slug)
        for slug, spec in self.methods.items():
            if spec.get("labels") is not None:
                self._lookup(self.label_sets, spec["labels"], f"methods.{slug}.labels",
                             "label set")  # fmt: skip
        for idset in self.idsets:
            train = self.idset(idset)["train"]
            for method in self.idset_methods(idset):
                labels = self.methods[method].get("labels")
                if labels is None:
                    continue
                for label_set in self.label_set_chain(labels):
                    plugin, _, _ = self.label_set(label_set)
                    corpus = self.idset(idset)["corpus"]
                    precomputed = self.corpora[corpus]["type"] == "embeddings"
                    if plugin.has("conjugated_labels") and precomputed:
                        raise ConfigError(
                            f"config: method '{method}' of idset '{idset}' uses label set "
                            f"'{label_set}' (miner {plugin.name}), which conjugates the "
                            f"adjectives of the corpus's words, but corpus '{corpus}' is a "
                            "file of precomputed embeddings, whose words the workflow does not "
                            "build: use a wordnet or wordlist corpus"
                        )
                    if plugin.has("class_names") and self.has_class_names(train) is False:
                        raise ConfigError(
                            f"config: method '{method}' of idset '{idset}' uses label set "
                            f"'{label_set}' (miner {plugin.name}), which needs the ID class "
                            f"names (Y_GT), but the ID-train set '{train}' has none. Give the "
                            "dataset its class names (imagefolder, or a filelist with "
                            "class_names or name labels), or leave this method out of the ID "
                            "set (label-free miners: "
                            f"{', '.join(n for n, p in catalog.MINERS.items() if not p.has('class_names'))})."
                        )


# Config sections by what their entries are called in messages.
SECTION_OF = {
    "models": "model", "datasets": "dataset", "corpora": "corpus", "idsets": "idset",
    "clusterers": "clusterer", "label_sets": "label set", "methods": "method",
}  # fmt: skip


def load_workflow_config(
    configfiles: Iterable[str | os.PathLike],
    schema_path: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    class_names_of=None,
) -> WorkflowConfig:
    """Read and merge config files (later ones win), apply ``overrides`` (``--config``),
    validate and check, as the workflow does at start; for the command-line tools."""
    config: dict[str, Any] = {}
    for path in configfiles:
        merge(config, load_config_file(path))
    merge(config, overrides or {})
    validate_config(config, schema_path)
    cfg = WorkflowConfig(config, class_names_of)
    cfg.apply_data_root()
    cfg.check()
    return cfg
