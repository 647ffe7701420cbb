"""The validated config as the workflow reads it (:class:`WorkflowConfig`): the questions the
workflow's input functions ask, answered from the config and the plugin catalog (which
parameter of a plugin names a label set, a clusterer, C, ... is the parameter's role in the
catalog); its start-up checks are :mod:`clustermine.config.checks`, each error naming its
key."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

from clustermine import catalog
from clustermine.config.errors import ConfigError
from clustermine.config.checks import check_config
from clustermine.config.loading import SECTION_OF, canonical_entries, load_config_file, merge
from clustermine.config.schema import validate_config


DATA_ROOT_KEYS = {"datasets": ("root", "list", "class_map", "class_names"), "corpora": ("path",)}


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
        canonical_entries(config)
        self.models: dict[str, dict] = config.get("models") or {}
        self.datasets: dict[str, dict] = config.get("datasets") or {}
        self.corpora: dict[str, dict] = config.get("corpora") or {}
        self.idsets: dict[str, dict] = config.get("idsets") or {}
        self.clusterers: dict[str, dict] = config.get("clusterers") or {}
        self.label_sets: dict[str, dict] = config.get("label_sets") or {}
        self.methods: dict[str, dict] = config.get("methods") or {}
        self.deployments: dict[str, dict] = config.get("deployments") or {}
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

    def lookup(self, section: dict, slug: str, where: str, what: str) -> dict:
        if slug not in section:
            name = next(k for k, v in SECTION_OF.items() if v == what)
            raise ConfigError(
                f"config: {where} names {what} '{slug}', which is not declared under "
                f"{name} (declared: {sorted(section)})"
            )
        return section[slug]

    def idset(self, slug: str) -> dict:
        return self.lookup(self.idsets, slug, "a target", "idset")

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
        spec = self.lookup(self.clusterers, slug, "a label set or cluster sweep", "clusterer")
        plugin = catalog.clusterer(spec["method"])
        return plugin, self._seeded(plugin, plugin.params_of(spec))

    def _seeded(self, plugin: catalog.Plugin, params: dict) -> dict:
        """``params`` with the plugin's seed (its parameter of role seed) defaulting to the
        global seed."""
        seed = plugin.with_role("seed")
        if seed is not None:
            params.setdefault(seed.name, self.seed)
        return params

    def knn_graph(self, clusterer: str) -> str | None:
        """The graph part of the kNN file name a clusterer trains on (k and search), or None."""
        plugin, params = self.clusterer(clusterer)
        search = plugin.knn_search(params)
        return None if search is None else search.name

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
        spec = self.lookup(self.label_sets, slug, "a method", "label set")
        plugin = catalog.miner(spec["miner"])
        inputs = {k: spec[k] for k in plugin.input_names if k in spec}
        return plugin, self._seeded(plugin, plugin.params_of(spec)), inputs

    def method(self, slug: str) -> tuple[catalog.Plugin, dict, str | None]:
        """(plugin, parameters, label-set slug or None) of a ``methods`` entry; a ``seed``
        parameter defaults to the global seed."""
        spec = self.lookup(self.methods, slug, "an ID set", "method")
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

    def has_class_names(self, dataset: str) -> bool | None:
        """Whether a dataset carries class names (asked once per dataset)."""
        if dataset not in self._class_names:
            if self._class_names_of is None:
                self._class_names[dataset] = None
            else:
                self._class_names[dataset] = self._class_names_of(self.datasets[dataset])
        return self._class_names[dataset]

    def deployment(self, slug: str) -> dict:
        return self.lookup(self.deployments, slug, "deployments", "deployment")

    def deployment_settings(self, slug: str) -> dict[str, Any]:
        """The re-mining settings a deployment gives (``clustermine.remine.RemineSettings``
        fills in the rest), the seed the config's unless it sets one."""
        spec = self.deployment(slug)
        keys = ("clusters", "holdout", "guard_p", "min_support", "seed")
        return {"seed": self.seed, **{k: spec[k] for k in keys if k in spec}}

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
        inputs its plugins need; the first problem is raised, naming its key
        (:mod:`clustermine.config.checks`)."""
        check_config(self)


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
