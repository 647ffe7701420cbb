"""What a catalog entry is: a plugin (miner, score or clusterer) with its parameters and needs,
the vocabulary of needs, roles and sweep axes, and the lookup of a plugin by kind and name.

The entries themselves are declared in ``miners.py``, ``scores.py`` and ``clusterers.py``; the
package (``clustermine.catalog``) fills the registries of this module with them, so that the
entry modules import this one and nothing imports back. Standard library only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from clustermine.knn_search import KnnSearch

KINDS = ("miner", "score", "clusterer")
# The config key of an entry that names its plugin, and the config section of each kind.
SELECTOR_KEYS = {"miner": "miner", "score": "score", "clusterer": "method"}
SECTIONS = {"miner": "label_sets", "score": "methods", "clusterer": "clusterers"}

# What a plugin may need, by kind: (what it is, the word the docs' tables use). The workflow
# turns each need into input files (workflow/rules/*_functions.smk), the library's loaders
# read them (mining.files, detectors.files, the cluster job); this is the one vocabulary.
NEEDS = {
    "miner": {
        "class_names": ("the ID class names (Y_GT) and their text embeddings", "Y_GT"),
        "zero_shot": ("the zero-shot top-1 corpus name of every ID-train image",
                      "zero-shot labels"),
        "clusters": ("cluster assignments of the ID-train images (the label set's parameters "
                     "of roles clusterer and num_clusters)", "clusters"),
        "image_embeddings": ("the ID-train image embeddings themselves", "ID-train images"),
        "text_density": ("the density of every corpus name's raw text feature (cached per k, "
                         "the parameter of role density_k)", "text density"),
        "conjugated_labels": ("CSP's conjugated labels \"<adjective> <superclass word>\" of "
                              "the corpus's adjectives, embedded with their own prompts (the "
                              "superclass words drawn with the parameter of role seed); the "
                              "label set's negatives may be among them", "conjugated labels"),
    },
    "score": {
        "train_embeddings": ("the ID-train image embeddings (fitted statistics, probes)",
                             "ID-train images"),
        "positives": ("positive label texts", "positives"),
        "negatives": ("negative label texts", "negatives"),
        "stream": ("a stream of test images: the score adapts at test time",
                   "a test stream (adapts at test time)"),
        "local_features": ("the local patch features [N, P, D] of every scored image (the "
                           "value path of the image tower's last attention layer)",
                           "local patch features"),
        "views": ("the embeddings of corrupted views of every scored image (its views: the "
                  "parameter of role views)", "corrupted views"),
    },
    "clusterer": {
        "knn": ("the k-nearest-neighbour graph of the embeddings (its k: the parameter of "
                "role knn_k)", "kNN graph"),
        "label_set": ("the positives of a label set and their text embeddings (the parameter "
                      "of role label_set)", "a label set"),
    },
}  # fmt: skip

# The needs of a score of the label texts alone: what re-mining from deployment images
# (clustermine.remine) refits. A score needing more cannot be re-mined.
LABEL_TEXT_NEEDS = frozenset({"positives", "negatives"})

# What a parameter's value is to the workflow, beyond a value its plugin reads. A reference
# (label_set, clusterer, idset) names another config entry, whose file becomes an input; the
# others set how an input file is made or default from the config.
ROLES = {
    "label_set": "names another label set (of the same ID set), whose file is an input",
    "clusterer": "names a clusterers entry, whose cluster file is an input",
    "num_clusters": "C, the number of clusters of that cluster file",
    "idset": "names an ID set",
    "knn_k": "k of the kNN graph file that is an input",
    "knn_index": "how that graph is searched: exact, or an approximate (IVF) index",
    "knn_nlist": "cells of that graph's IVF index",
    "knn_nprobe": "cells each query of that graph's IVF index searches",
    "density_k": "k of the text-density file that is an input",
    "seed": "a seed; the config's global seed when not given",
    "file": "the path of a user's file (e.g. a list of names), which is an input: editing "
            "the file reruns what reads it",
    "views": "corrupted views (a preset or a list of <corruption>-<severity>), whose "
             "embeddings of every scored image are inputs",
}
# Sweep axes of the report's sensitivity figure, each a parameter's ``axis`` (paper Fig. 3).
AXES = {"K": "K (negatives)", "M": "M (min. votes)", "C": "C (clusters)"}


class CatalogError(ValueError):
    """An unknown plugin, or parameters a plugin does not accept."""


@dataclass(frozen=True)
class Param:
    """One parameter (or input-choosing key) of a plugin."""

    name: str
    default: Any
    schema: Mapping[str, Any]
    help: str
    # Input-choosing keys that must be given (e.g. a ClusterMine label set's clusterer and C).
    required: bool = False
    # What the value is to the workflow (one of ROLES), and the report's sweep axis (AXES).
    role: str | None = None
    axis: str | None = None
    # The parameters of another plugin of the same kind, the one named by this parameter
    # (CoVer's ``base_params`` are those of its ``base``): checked against that plugin's.
    params_of: str | None = None

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in ROLES:
            raise CatalogError(f"parameter {self.name}: unknown role {self.role!r}")
        if self.axis is not None and self.axis not in AXES:
            raise CatalogError(f"parameter {self.name}: unknown axis {self.axis!r}")

    def check(self, value: Any, where: str) -> None:
        """Refuse a value outside this parameter's schema fragment (type, range, enum), naming
        ``where``: the config schema checks the same fragment at start, this check guards
        callers of the library."""
        problem = _schema_problem(value, self.schema)
        if problem:
            raise CatalogError(f"{where}: parameter {self.name}={value!r} {problem}")


@dataclass(frozen=True)
class Plugin:
    kind: str
    name: str
    summary: str
    source: str
    implementation: str
    params: tuple[Param, ...] = ()
    # Config keys that choose input files rather than parametrise the method.
    input_keys: tuple[Param, ...] = ()
    needs: frozenset[str] = frozenset()
    # Copies of its input files a job of this plugin holds at once (its memory request).
    memory_copies: int = 2
    # Parameters (and input-choosing keys, by role) that make the plugin run on a few dozen
    # images in seconds: the end-to-end tests run every plugin with them.
    small: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CatalogError(f"plugin {self.name}: kind must be one of {KINDS}")
        unknown = set(self.needs) - set(NEEDS[self.kind])
        if unknown:
            raise CatalogError(f"{self.kind} {self.name}: unknown needs {sorted(unknown)}")
        names = [p.name for p in (*self.params, *self.input_keys)]
        if len(set(names)) != len(names):
            raise CatalogError(f"{self.kind} {self.name}: a parameter is declared twice")
        unknown = set(self.small) - set(names)
        if unknown:
            raise CatalogError(f"{self.kind} {self.name}: small names unknown {sorted(unknown)}")

    # --- parameters ------------------------------------------------------------------------

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def input_names(self) -> list[str]:
        return [p.name for p in self.input_keys]

    @property
    def stateful(self) -> bool:
        """Whether the score adapts at test time (it is then scored on a stream)."""
        return "stream" in self.needs

    def has(self, need: str) -> bool:
        if need not in NEEDS[self.kind]:
            raise CatalogError(f"{need!r} is not something a {self.kind} can need")
        return need in self.needs

    def with_role(self, role: str) -> Param | None:
        """The parameter or input-choosing key of ``role``, None when the plugin has none."""
        if role not in ROLES:
            raise CatalogError(f"unknown role {role!r}; roles: {sorted(ROLES)}")
        return next((p for p in (*self.params, *self.input_keys) if p.role == role), None)

    def value_of(self, role: str, entry: Mapping[str, Any]) -> Any:
        """The value of the key of ``role`` in a config ``entry`` (its default when absent),
        None when the plugin has no such key."""
        param = self.with_role(role)
        if param is None:
            return None
        return entry.get(param.name, param.default)

    def references(self, entry: Mapping[str, Any], role: str = "label_set") -> dict[str, str]:
        """{key: slug} of every key of ``role`` a config ``entry`` gives (e.g. the label sets
        it names)."""
        return {
            p.name: entry[p.name]
            for p in (*self.params, *self.input_keys)
            if p.role == role and entry.get(p.name) is not None
        }

    def params_of(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of one config entry: every key but the one naming the plugin
        (``miner``, ``score``, ``method``) and the input-choosing keys."""
        skip = {SELECTOR_KEYS[self.kind], *self.input_names}
        return {k: v for k, v in entry.items() if k not in skip}

    def resolve(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """All parameters with defaults filled in; an unknown key is an error naming the
        accepted ones."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            raise CatalogError(
                f"{self.kind} {self.name!r} has no parameter(s) {unknown}; accepted: "
                f"{sorted(self.param_names)}"
            )
        resolved = {**self.defaults, **params}
        for p in self.params:
            p.check(resolved[p.name], f"{self.kind} {self.name!r}")
            if p.params_of is not None:
                try:
                    get(self.kind, resolved[p.params_of]).resolve(resolved[p.name])
                except CatalogError as err:
                    raise CatalogError(f"{self.kind} {self.name!r}: {p.name}: {err}") from None
        return resolved

    def knn_search(self, params: Mapping[str, Any]) -> KnnSearch | None:
        """k and search of the kNN graph this clusterer trains on (its file name:
        ``.name``), or None when it needs none."""
        if not self.has("knn"):
            return None
        index = self.value_of("knn_index", params)
        nlist, nprobe = self.value_of("knn_nlist", params), self.value_of("knn_nprobe", params)
        return KnnSearch(
            int(self.value_of("knn_k", params)),
            index or "exact",
            None if nlist is None else int(nlist),
            KnnSearch.nprobe if nprobe is None else int(nprobe),
        )

    def load(self) -> Any:
        """The implementation (a function or class), imported now."""
        module, _, attr = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attr)

    # --- config schema ---------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        """JSON schema of the keys this plugin accepts in a config entry (besides the selector)."""
        props = {p.name: dict(p.schema) for p in (*self.params, *self.input_keys)}
        required = [p.name for p in self.input_keys if p.required]
        out: dict[str, Any] = {"properties": props}
        if required:
            out["required"] = required
        branches = [b for p in self.params if p.params_of for b in self._params_of_branches(p)]
        if branches:
            out["allOf"] = branches
        return out

    def _params_of_branches(self, param: Param) -> list[dict[str, Any]]:
        """For a ``params_of`` parameter: one ``if {chooser: name} then {its parameters}``
        branch per plugin the chooser may name (the default's also when the chooser is absent),
        so that a misspelt nested parameter is named when the workflow starts."""
        chooser = next(p for p in self.params if p.name == param.params_of)
        branches = []
        for name in chooser.schema.get("enum", []):
            other = get(self.kind, name)
            nested = {"type": "object", "additionalProperties": False,
                      "properties": {p.name: dict(p.schema) for p in other.params}}  # fmt: skip
            when: dict[str, Any] = {"properties": {chooser.name: {"const": name}},
                                    "required": [chooser.name]}  # fmt: skip
            if name == chooser.default:
                when = {"anyOf": [when, {"not": {"required": [chooser.name]}}]}
            branches.append({"if": when, "then": {"properties": {param.name: nested}}})
        return branches


def _schema_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` against a parameter's JSON-schema fragment (the keywords
    the catalog uses: type, enum, pattern, minimum, maximum, exclusiveMinimum), or None."""
    import numbers
    import re

    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if value is None:
        return None if (not types or "null" in types) else "must not be null"
    kinds = {
        "integer": isinstance(value, numbers.Integral) and not isinstance(value, bool),
        "number": isinstance(value, numbers.Real) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, (list, tuple)),
        "object": isinstance(value, Mapping),
        "null": False,
    }
    if types and not any(kinds.get(t, False) for t in types):
        return f"must be of type {' or '.join(types)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {schema['enum']}"
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        return f"must match {schema['pattern']}"
    if "items" in schema and isinstance(value, (list, tuple)):
        for item in value:
            problem = _schema_problem(item, schema["items"])
            if problem:
                return f"has an item {item!r} that {problem}"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"must be at most {schema['maximum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return f"must be above {schema['exclusiveMinimum']}"
    return None


def need_words(kind: str, needs: Iterable[str]) -> list[str]:
    """The docs' words for ``needs`` of a plugin of ``kind``."""
    return [NEEDS[kind][n][1] for n in sorted(needs)]


# The registries, filled with the declared entries by the package (clustermine/catalog).
REGISTRIES: dict[str, dict[str, Plugin]] = {kind: {} for kind in KINDS}


def get(kind: str, name: str) -> Plugin:
    """The declaration of plugin ``name`` of ``kind``; a clear error for unknown names."""
    if kind not in REGISTRIES:
        raise CatalogError(f"kind must be one of {KINDS}, got {kind!r}")
    registry = REGISTRIES[kind]
    if name not in registry:
        raise CatalogError(f"unknown {kind} {name!r}; known {kind}s: {sorted(registry)}")
    return registry[name]


def miner(name: str) -> Plugin:
    return get("miner", name)


def score(name: str) -> Plugin:
    return get("score", name)


def clusterer(name: str) -> Plugin:
    return get("clusterer", name)
