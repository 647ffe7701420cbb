"""The plugin catalog: one torch-free declaration of every miner, score and clusterer.

Each plugin is declared once, here, by name: its parameters with their defaults and JSON-schema
fragments, the inputs it needs (zero-shot labels, clusters, class names, kNN pairs and their
default k, ID-train image features, a test stream, ...), the config keys that choose inputs
rather than parameters, and where its implementation lives (``"module:attribute"``, imported
only when it is used). The workflow's input functions, the config schema check, the paper-grid
job counts, the documentation tables and the tests all read these declarations; adding a
method is one implementation module plus one entry in ``miners.py``, ``scores.py`` or
``clusterers.py`` (docs/architecture.md).

What an entry is (``Param``, ``Plugin``), the vocabulary of needs and roles, and the lookup by
name live in ``plugin.py``, which the entry modules import; this package registers the entries
there, so no module imports back. Importing it imports nothing heavier than the standard
library, so the Snakefile can read it when it is parsed (on SLURM every job parses it again).
"""
from __future__ import annotations

from typing import Iterable

from clustermine.catalog.clusterers import CLUSTERER_PLUGINS
from clustermine.catalog.miners import MINER_PLUGINS
from clustermine.catalog.plugin import (
    AXES,
    KINDS,
    LABEL_TEXT_NEEDS,
    NEEDS,
    REGISTRIES,
    ROLES,
    SECTIONS,
    SELECTOR_KEYS,
    CatalogError,
    Param,
    Plugin,
    clusterer,
    get,
    miner,
    need_words,
    score,
)
from clustermine.catalog.report import (
    PLAIN_SCORE,
    PLOTS,
    PROBE_SCORES,
    TABLE_FORMATS,
    TABLES,
)
from clustermine.catalog.scores import SCORE_PLUGINS


def _register(kind: str, plugins: Iterable[Plugin]) -> dict[str, Plugin]:
    out = REGISTRIES[kind]
    for plugin in plugins:
        if plugin.kind != kind:
            raise CatalogError(f"{plugin.kind} {plugin.name!r} is declared among the {kind}s")
        if plugin.name in out:
            raise CatalogError(f"{plugin.kind} {plugin.name!r} is declared twice")
        out[plugin.name] = plugin
    return out


MINERS = _register("miner", MINER_PLUGINS)
SCORES = _register("score", SCORE_PLUGINS)
CLUSTERERS = _register("clusterer", CLUSTERER_PLUGINS)


def sweep_axes() -> dict[str, tuple[str, ...]]:
    """{axis: names of the miner parameters on it} (the report's sensitivity sweeps)."""
    out: dict[str, list[str]] = {axis: [] for axis in AXES}
    for plugin in MINERS.values():
        for p in (*plugin.params, *plugin.input_keys):
            if p.axis and p.name not in out[p.axis]:
                out[p.axis].append(p.name)
    return {axis: tuple(names) for axis, names in out.items()}


__all__ = [
    "CLUSTERERS",
    "AXES",
    "KINDS",
    "LABEL_TEXT_NEEDS",
    "MINERS",
    "NEEDS",
    "PLAIN_SCORE",
    "PROBE_SCORES",
    "REGISTRIES",
    "ROLES",
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
    "need_words",
    "score",
    "sweep_axes",
]
