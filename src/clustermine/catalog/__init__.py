"""The plugin catalog: one torch-free declaration of every miner, score and clusterer.

Each plugin is declared once, here, by name: its parameters with their defaults and JSON-schema
fragments, the inputs it needs (zero-shot labels, clusters, class names, kNN pairs and their
default k, ID-train image features, a test stream, ...), the config keys that choose inputs
rather than parameters, and where its implementation lives (``"module:attribute"``, imported
only when it is used). The workflow's input functions, the config schema check, the paper-grid
job counts, the documentation tables and the tests all read these declarations; adding a
method is one implementation module plus one entry in ``miners.py``, ``scores.py`` or
``clusterers.py`` (docs/architecture.md).

Importing this package imports nothing heavier than the standard library, so the Snakefile can
read it when it is parsed (on SLURM every job parses it again).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

KINDS = ("miner", "score", "clusterer")
# The config key of an entry that names its plugin, and the config section of each kind.
SELECTOR_KEYS = {"miner": "miner", "score": "score", "clusterer": "method"}
SECTIONS = {"miner": "label_sets", "score": "methods", "clusterer": "clusterers"}

# What a plugin may need, by kind (the workflow turns each into input files).
NEEDS = {
    "miner": {
        "class_names": "the ID class names (Y_GT) and their text embeddings",
        "zero_shot": "the zero-shot top-1 corpus name of every ID-train image",
        "clusters": "cluster assignments of the ID-train images (label-set keys clusterer, C)",
        "image_embeddings": "the ID-train image embeddings themselves",
        "text_density": "the density of every corpus name's raw text feature (cached per k1)",
        "positives_of": "the positives of another label set (label-set key positives_of)",
    },
    "score": {
        "train_embeddings": "the ID-train image embeddings (fitted statistics, probes)",
        "positives": "positive label texts",
        "negatives": "negative label texts",
        "stream": "a stream of test images: the score adapts at test time",
    },
    "clusterer": {
        "knn": "the k-nearest-neighbour graph of the embeddings (its k: parameter knn)",
        "label_set": "the positives of a label set and their text embeddings",
    },
}


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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CatalogError(f"plugin {self.name}: kind must be one of {KINDS}")
        unknown = set(self.needs) - set(NEEDS[self.kind])
        if unknown:
            raise CatalogError(f"{self.kind} {self.name}: unknown needs {sorted(unknown)}")

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
        return {**self.defaults, **params}

    def knn_k(self, params: Mapping[str, Any]) -> int | None:
        """k of the kNN graph this clusterer trains on, or None when it needs none."""
        if not self.has("knn"):
            return None
        return int(params.get("knn", self.defaults["knn"]))

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
        return out


def _registry(plugins: Iterable[Plugin]) -> dict[str, Plugin]:
    out: dict[str, Plugin] = {}
    for plugin in plugins:
        if plugin.name in out:
            raise CatalogError(f"{plugin.kind} {plugin.name!r} is declared twice")
        out[plugin.name] = plugin
    return out


from clustermine.catalog.clusterers import CLUSTERER_PLUGINS  # noqa: E402
from clustermine.catalog.miners import MINER_PLUGINS  # noqa: E402
from clustermine.catalog.report import PLOTS, TABLE_FORMATS, TABLES  # noqa: E402
from clustermine.catalog.scores import SCORE_PLUGINS  # noqa: E402

MINERS = _registry(MINER_PLUGINS)
SCORES = _registry(SCORE_PLUGINS)
CLUSTERERS = _registry(CLUSTERER_PLUGINS)
REGISTRIES = {"miner": MINERS, "score": SCORES, "clusterer": CLUSTERERS}


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


__all__ = [
    "CLUSTERERS",
    "KINDS",
    "MINERS",
    "NEEDS",
    "PLOTS",
    "SCORES",
    "SECTIONS",
    "SELECTOR_KEYS",
    "TABLES",
    "TABLE_FORMATS",
    "CatalogError",
    "Param",
    "Plugin",
    "clusterer",
    "get",
    "miner",
    "score",
]
