"""Reading config files: strict YAML (a key given twice is an error; merge keys work) and the
recursive merge of several files, as Snakemake merges them; and the canonical key order of a
loaded config's entries."""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from clustermine.config.errors import ConfigError
from clustermine.missing_files import missing_file
from clustermine.text_lines import read_text


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last);
    merge keys work as standard YAML says."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    # Only keys written in this mapping count: keys brought in by a merge key (``<<: *base``)
    # are standard YAML's defaults, which a written key overrides.
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{key_node.start_mark.name}:{line}: key {key!r} is given twice in the same "
                f"mapping (first on line {seen[key]}); YAML would silently keep the second. "
                "Remove one of them."
            )
        seen[key] = line
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file, refusing text that is not UTF-8, duplicate keys, an empty
    file (as Snakemake does) and anything but a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(missing_file(path, "config file"))
    stream = io.StringIO(read_text(path, "config file", ConfigError))
    stream.name = str(path)  # YAML's messages name the file
    try:
        data = yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        raise ConfigError(f"{path}: the file is empty (or only comments); a config file is a "
                          "mapping of keys (config/README.md)")  # fmt: skip
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


# The keys of an ID set that name its datasets.
ID_SET_DATASET_KEYS = ("train", "test", "calibration", "benchmarks", "extra_benchmarks")

# Config sections by what their entries are called in messages.
SECTION_OF = {
    "models": "model", "datasets": "dataset", "corpora": "corpus", "idsets": "idset",
    "clusterers": "clusterer", "label_sets": "label set", "methods": "method",
    "deployments": "deployment",
}  # fmt: skip


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys in sorted order, recursively (lists keep theirs):
    the same declaration written in another key order gives the same value, and the same
    ``repr``, which is what Snakemake compares to decide whether params changed."""
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def canonical_entries(config: dict[str, Any]) -> None:
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
