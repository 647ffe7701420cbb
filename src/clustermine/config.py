"""The workflow configuration: loading, validation and every start-up check (config/README.md).

:class:`WorkflowConfig` wraps the config dictionary and answers the questions the workflow's
input functions ask (which datasets an ID set uses, which plugin a label set names, ...), so
that the ``.smk`` files stay declarative and every check is unit-tested without Snakemake.
Errors are :class:`ConfigError` with the config key that is wrong and what to do.

Imports only the standard library, PyYAML, jsonschema and the plugin catalog: the Snakefile
uses this module when it is parsed.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from clustermine import catalog


class ConfigError(ValueError):
    """The config is malformed or names something that is not declared."""


# --- loading -----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{key_node.start_mark.name}:{line}: key {key!r} is given twice in the same "
                f"mapping (first on line {seen[key]}); YAML would silently keep the second. "
                "Remove one of them."
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file, refusing duplicate keys and anything but a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.load(f, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys, got {type(data)}")
    return data


def check_config_files(paths: Iterable[str | os.PathLike]) -> None:
    """Refuse config files with duplicate keys (Snakemake's own loader keeps the last)."""
    for path in paths:
        load_config_file(path)


def merge(base: dict, update: Mapping) -> dict:
    """Recursive update of nested mappings, as Snakemake merges several config files."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# --- schema ------------------------------------------------------------------------------------


# Keys of a config entry that belong to the workflow, not to the plugin.
ENTRY_KEYS = {"score": {"labels": {"$ref": "#/definitions/slug"}}}


def plugin_branches(kind: str) -> list[dict[str, Any]]:
    """One ``if {selector: name} then {its keys}`` branch per plugin of ``kind``, from the
    catalog: a misspelt parameter is then named when the workflow starts."""
    selector = catalog.SELECTOR_KEYS[kind]
    branches = []
    for name, plugin in catalog.REGISTRIES[kind].items():
        then = plugin.schema()
        then["properties"] = {selector: {}, **ENTRY_KEYS.get(kind, {}), **then["properties"]}
        then["additionalProperties"] = False
        branches.append({"if": {"properties": {selector: {"const": name}}}, "then": then})
    return branches


def config_schema(base: Mapping[str, Any]) -> dict[str, Any]:
    """The schema file's schema with the catalog's plugin names and parameters filled in."""
    from clustermine.prompts import PROMPT_SETS
    from clustermine.public_sets import PUBLIC_SETS

    schema = copy.deepcopy(dict(base))
    schema["definitions"]["prompt_set"] = {"type": "string", "enum": sorted(PROMPT_SETS)}
    schema["definitions"]["public_set"] = {"type": "string", "enum": sorted(PUBLIC_SETS)}
    for kind, section in catalog.SECTIONS.items():
        entry = schema["properties"][section]["additionalProperties"]
        selector = catalog.SELECTOR_KEYS[kind]
        entry["properties"][selector] = {
            "type": "string",
            "enum": sorted(catalog.REGISTRIES[kind]),
            "description": f"a {kind} declared in clustermine.catalog",
        }
        entry["allOf"] = [*entry.get("allOf", []), *plugin_branches(kind)]
    return schema


def _validator_with_defaults(schema: Mapping[str, Any]):
    """A Draft 2020-12 validator that also fills in the ``default`` of absent properties
    (as Snakemake's own ``validate`` does)."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Check ``config`` against the schema file plus the catalog; fill in defaults."""
    with open(schema_path, encoding="utf-8") as f:
        base = yaml.safe_load(f)
    validator = _validator_with_defaults(config_schema(base))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        messages = []
        for err in errors[:10]:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            messages.append(f"  {where}: {_best_message(err)}")
        raise ConfigError(
            f"config: {len(errors)} problem(s) against {schema_path} (keys are explained in "
            "config/README.md):\n" + "\n".join(messages)
        )


def _best_message(err) -> str:
    """The most specific message of a validation error (if/then branches nest theirs)."""
    while err.context:
        err = max(err.context, key=lambda e: len(e.absolute_path))
    return err.message


# --- the config as the workflow reads it --------------------------------------------------------

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
        return self.idset(idset).get("prompts", "simple")

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

    def used_datasets(self) -> list[str]:
        if not self.idsets:
            return sorted(self.datasets)
        return sorted({d for idset in self.idsets for d in self.idset_datasets(idset)})

    def clusterer(self, slug: str) -> tuple[catalog.Plugin, dict]:
        """The plugin and parameters of a ``clusterers`` entry (seeded by the global seed)."""
        spec = self._lookup(self.clusterers, slug, "a label set or cluster sweep", "clusterer")
        plugin = catalog.clusterer(spec["method"])
        params = plugin.params_of(spec)
        if "seed" in plugin.param_names:
            params.setdefault("seed", self.seed)
        return plugin, params

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
        idset = spec.get("idset")
        if idset is None:
            owners = [k for k, v in self.idsets.items() if v["train"] == dataset]
            if len(owners) != 1:
                raise ConfigError(
                    f"config: clusterers.{clusterer} needs the ID set of its label set "
                    f"'{spec['names_from']}' for dataset '{dataset}'; "
                    f"{'several' if owners else 'no'} ID sets train on it ({owners}): set "
                    f"clusterers.{clusterer}.idset"
                )
            idset = owners[0]
        return idset, spec["names_from"]

    def label_set(self, slug: str) -> tuple[catalog.Plugin, dict, dict]:
        """(plugin, parameters, input-choosing keys) of a ``label_sets`` entry."""
        spec = self._lookup(self.label_sets, slug, "a method", "label set")
        plugin = catalog.miner(spec["miner"])
        inputs = {k: spec[k] for k in plugin.input_names if k in spec}
        return plugin, plugin.params_of(spec), inputs

    def method(self, slug: str) -> tuple[catalog.Plugin, dict, str | None]:
        """(plugin, parameters, label-set slug or None) of a ``methods`` entry; a ``seed``
        parameter defaults to the global seed."""
        spec = self._lookup(self.methods, slug, "an ID set", "method")
        plugin = catalog.score(spec["score"])
        params = {k: v for k, v in spec.items() if k not in ("score", "labels")}
        if "seed" in plugin.param_names:
            params.setdefault("seed", self.seed)
        return plugin, params, spec.get("labels")

    def label_set_chain(self, slug: str) -> list[str]:
        """A label set and every label set its inputs name (``match_positives_of``, ...)."""
        chain, pending = [], [slug]
        while pending:
            current = pending.pop()
            if current in chain:
                continue
            chain.append(current)
            _, _, inputs = self.label_set(current)
            pending += [v for k, v in inputs.items() if k in LABEL_SET_REFERENCES]
        return chain

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
        return int(self.models[model].get("batch_size", 256))

    @property
    def encode(self) -> dict:
        return self.raw.get("encode") or {}

    @property
    def compute(self) -> dict:
        return self.raw.get("compute") or {}

    def loader_workers(self) -> int:
        return int(self.encode.get("num_workers", 4))

    def max_unreadable_fraction(self) -> float:
        return float(self.encode.get("max_unreadable_fraction", 0.01))

    def max_image_pixels(self) -> int | None:
        """Not a speed setting: it decides which images an embedding file holds (None: the
        library's default, clustermine.images.DEFAULT_MAX_PIXELS)."""
        value = self.encode.get("max_image_pixels")
        return None if value is None else int(value)

    def device(self) -> str:
        return str(self.compute.get("device", "auto"))

    def weights_cache(self) -> str:
        """Folder of the fetched pretrained weights (clustermine.weights)."""
        from clustermine.weights import DEFAULT_CACHE

        return str(self.raw.get("weights_cache") or DEFAULT_CACHE)

    def memory_budget_mb(self) -> int:
        return int(self.compute.get("memory_budget_mb", 1024))

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
            for key in ("train", "test", "calibration", "benchmarks", "extra_benchmarks"):
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
            if not plugin.has("label_set"):
                continue
            where = f"clusterers.{slug}"
            self._lookup(self.label_sets, spec["names_from"], f"{where}.names_from", "label set")
            if spec.get("idset") is not None:
                self._lookup(self.idsets, spec["idset"], f"{where}.idset", "idset")
            for label_set in self.label_set_chain(spec["names_from"]):
                if self.label_set(label_set)[2].get("clusterer") == slug:
                    raise ConfigError(
                        f"config: {where}.names_from '{spec['names_from']}' is mined from "
                        f"clusters of '{slug}' itself (label set '{label_set}'): a cycle"
                    )
        for slug in self.label_sets:
            plugin, _, inputs = self.label_set(slug)
            for key in (p.name for p in plugin.input_keys if p.required):
                if key not in inputs:
                    raise ConfigError(
                        f"config: label_sets.{slug} (miner {plugin.name}) needs '{key}'"
                    )
            if "clusterer" in inputs:
                self._lookup(
                    self.clusterers, inputs["clusterer"], f"label_sets.{slug}.clusterer",
                    "clusterer",
                )  # fmt: skip
            for key in LABEL_SET_REFERENCES:
                if key in inputs:
                    if inputs[key] == slug:
                        raise ConfigError(f"config: label_sets.{slug}.{key} names itself")
                    self._lookup(self.label_sets, inputs[key], f"label_sets.{slug}.{key}",
                                 "label set")  # fmt: skip
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
# Input-choosing label-set keys that name another label set.
LABEL_SET_REFERENCES = ("match_positives_of", "positives_of")


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
