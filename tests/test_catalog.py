"""The plugin catalog is the one declaration of every miner, score and clusterer: each entry's
implementation exists and takes exactly the declared parameters, and the config schema check
accepts exactly those parameters."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import pytest
import yaml
from helpers import REPO

from clustermine import catalog
from clustermine.config import ConfigError, config_schema, validate_config
from clustermine.detectors import Detector
from clustermine.prompts import PROMPT_SETS

SCHEMA_FILE = REPO / "workflow/schemas/config.schema.yaml"


def test_importing_the_catalog_imports_no_heavy_library():
    code = (
        "import sys, clustermine.catalog, clustermine.config, clustermine.demo;"
        "heavy = {'torch', 'numpy', 'pandas', 'matplotlib', 'h5py'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(catalog.MINERS))
def test_miner_functions_take_exactly_the_declared_parameters(name):
    plugin = catalog.miner(name)
    params = inspect.signature(plugin.load()).parameters
    keyword = [p for p in params.values() if p.kind is p.KEYWORD_ONLY]
    assert [p.name for p in keyword] == plugin.param_names
    # The defaults live in the catalog only.
    assert all(p.default is p.empty for p in keyword)


@pytest.mark.parametrize("name", sorted(catalog.SCORES))
def test_score_classes_are_detectors_of_that_name(name):
    cls = catalog.score(name).load()
    assert issubclass(cls, Detector) and cls.name == name
    assert cls.resolve_params({}) == catalog.score(name).defaults


@pytest.mark.parametrize("name", sorted(catalog.CLUSTERERS))
def test_clusterers_share_one_interface_and_their_configs_the_declared_parameters(name):
    plugin = catalog.clusterer(name)
    fit = plugin.load()
    parameters = inspect.signature(fit).parameters
    assert list(parameters)[:3] == ["embeddings", "num_clusters", "params"]
    assert {"neighbors", "device", "budget_bytes"} <= set(parameters)
    config_cls = getattr(sys.modules[fit.__module__], "CONFIG", None)
    if config_cls is not None:
        fields = {f.name: f.default for f in dataclasses.fields(config_cls)}
        fields.pop("num_clusters")
        assert fields == plugin.defaults


def test_unknown_names_and_parameters_are_named():
    with pytest.raises(catalog.CatalogError, match="known miners: .*clustermine"):
        catalog.miner("clustermined")
    with pytest.raises(catalog.CatalogError, match=r"no parameter\(s\) \['M'\]; accepted: "):
        catalog.miner("posmine").resolve({"M": 3})
    assert catalog.miner("posmine").resolve({"min_votes": 3})["min_votes"] == 3
    assert catalog.clusterer("temi").knn_k({}) == catalog.clusterer("temi").defaults["knn"]
    assert catalog.clusterer("temi").knn_k({"knn": 7}) == 7
    assert catalog.clusterer("kmeans").knn_k({}) is None


def schema_branch(kind: str, name: str) -> dict:
    schema = config_schema(yaml.safe_load(SCHEMA_FILE.read_text()))
    entry = schema["properties"][catalog.SECTIONS[kind]]["additionalProperties"]
    selector = catalog.SELECTOR_KEYS[kind]
    for branch in entry["allOf"]:
        if branch["if"]["properties"][selector]["const"] == name:
            return branch["then"]
    raise AssertionError(f"no schema branch for {kind} {name}")


@pytest.mark.parametrize("kind", catalog.KINDS)
def test_schema_allows_exactly_the_declared_keys(kind):
    for name, plugin in catalog.REGISTRIES[kind].items():
        allowed = set(schema_branch(kind, name)["properties"])
        expected = {catalog.SELECTOR_KEYS[kind], *plugin.param_names, *plugin.input_names}
        expected |= {"labels"} if kind == "score" else set()
        assert allowed == expected, name


def minimal_config(**sections) -> dict:
    config = {
        "models": {"m": {"arch": "clustermine-tiny", "pretrained": None}},
        "datasets": {"d": {"type": "imagefolder", "root": "x"}},
    }
    config.update(sections)
    return config


def test_validation_names_a_misspelt_plugin_parameter():
    config = minimal_config(label_sets={"pm": {"miner": "posmine", "M": 3}})
    with pytest.raises(ConfigError, match=r"label_sets\.pm: .*'M' was unexpected"):
        validate_config(config, SCHEMA_FILE)
    config = minimal_config(clusterers={"t": {"method": "temi", "heads": 0}})
    with pytest.raises(ConfigError, match=r"clusterers\.t\.heads"):
        validate_config(config, SCHEMA_FILE)
    config = minimal_config(methods={"x": {"score": "odin"}})
    with pytest.raises(ConfigError, match="'odin' is not one of"):
        validate_config(config, SCHEMA_FILE)


def test_validation_fills_schema_defaults_and_knows_the_prompt_sets():
    config = minimal_config(label_sets={"c": {"miner": "clustermine", "clusterer": "k", "C": 4}})
    validate_config(config, SCHEMA_FILE)
    assert config["seed"] == 0 and config["models"]["m"]["batch_size"] == 256
    schema = config_schema(yaml.safe_load(SCHEMA_FILE.read_text()))
    assert set(schema["definitions"]["prompt_set"]["enum"]) == set(PROMPT_SETS)
    missing_c = minimal_config(label_sets={"c": {"miner": "clustermine", "clusterer": "k"}})
    with pytest.raises(ConfigError, match="'C' is a required property"):
        validate_config(missing_c, SCHEMA_FILE)


def test_docs_tables_are_generated_from_the_catalog():
    from clustermine.catalog.docs import stale_docs

    assert stale_docs(REPO / "docs") == [], "run: python -m clustermine.catalog.docs"
