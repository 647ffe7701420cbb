"""The plugin catalog is the one declaration of every miner, score and clusterer: each entry's
implementation exists and takes exactly the declared parameters, and the config schema check
accepts exactly those parameters."""

from __future__ import annotations

import dataclasses
import inspect
import re
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
    temi = catalog.clusterer("temi")
    assert temi.knn_search({}).k == temi.defaults["knn"]
    assert temi.knn_search({"knn": 7}).name == "k7"
    # The IVF settings name the file only when the search is IVF.
    assert temi.knn_search({"knn": 7, "knn_nprobe": 4}).name == "k7"
    assert temi.knn_search({"knn": 7, "knn_index": "ivf", "knn_nprobe": 4}).name == (
        "k7.ivf-nlistauto-nprobe4")
    assert catalog.clusterer("kmeans").knn_search({}) is None


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


def test_parameter_values_outside_their_schema_are_refused_naming_the_parameter():
    temi = catalog.clusterer("temi")
    for bad, message in (({"heads": 0}, "heads=0 must be at least 1"),
                         ({"teacher_momentum": 1.5}, "teacher_momentum=1.5 must be at most 1"),
                         ({"student_temp": 0}, "student_temp=0 must be above 0"),
                         ({"zscore": 1}, "zscore=1 must be of type boolean"),
                         ({"min_lr": "x"}, "min_lr='x' must be of type number or null")):
        with pytest.raises(catalog.CatalogError, match=re.escape(message)):
            temi.resolve(bad)
    with pytest.raises(catalog.CatalogError, match="metric='manhattan' must be one of"):
        catalog.clusterer("kmeans").resolve({"metric": "manhattan"})
    assert temi.resolve({"min_lr": None, "heads": 2})["heads"] == 2


@pytest.mark.parametrize("kind,name", [(k, n) for k in catalog.KINDS for n in catalog.REGISTRIES[k]])
def test_small_settings_of_every_plugin_are_valid_values(kind, name):
    plugin = catalog.get(kind, name)
    params = {k: v for k, v in plugin.small.items() if k in plugin.param_names}
    plugin.resolve(params)
    for key in set(plugin.small) - set(params):  # input-choosing keys set by their role
        param = next(p for p in plugin.input_keys if p.name == key)
        assert param.role is not None and not _schema_rejects(param, plugin.small[key])


def _schema_rejects(param, value) -> bool:
    try:
        param.check(value, "test")
    except catalog.CatalogError:
        return True
    return False


def test_roles_name_what_the_workflow_turns_into_inputs():
    # A miner that votes on clusters says which key names the clusterer and which is C; one
    # that reads the text density says which key is its k; a clusterer on a kNN graph, its k.
    for plugin in catalog.MINERS.values():
        if plugin.has("clusters"):
            assert plugin.with_role("clusterer").required and plugin.with_role("num_clusters")
        if plugin.has("text_density"):
            assert plugin.with_role("density_k") is not None
    for plugin in catalog.CLUSTERERS.values():
        if plugin.has("knn"):
            search = plugin.knn_search({})
            assert search.k == plugin.with_role("knn_k").default and search.index == "exact"
            assert search.name == f"k{search.k}"  # the file name every earlier version gave
        if plugin.has("label_set"):
            assert plugin.with_role("label_set").required
    with pytest.raises(catalog.CatalogError, match="unknown role"):
        catalog.Param("x", 1, {}, "x", role="nonsense")
    with pytest.raises(catalog.CatalogError, match="declared twice"):
        catalog.Plugin("miner", "twice", "", "", "m:f", params=(
            catalog.Param("a", 1, {}, ""), catalog.Param("a", 2, {}, "")))


def test_one_vocabulary_of_needs_names_every_need_and_its_docs_word():
    from clustermine.catalog import docs

    for kind, needs in catalog.NEEDS.items():
        for need, (meaning, word) in needs.items():
            assert meaning and word
    assert not hasattr(docs, "NEED_WORDS")
    assert catalog.need_words("score", {"stream"}) == ["a test stream (adapts at test time)"]


def test_the_snakefile_imports_nothing_heavy_when_it_is_parsed():
    """On SLURM every job parses the Snakefile again: every module its rules import at parse
    time (the import lines of workflow/rules/*.smk) must load without numpy, torch, pandas,
    h5py or matplotlib."""
    lines = []
    for path in sorted((REPO / "workflow/rules").glob("*.smk")) + [REPO / "workflow/Snakefile"]:
        lines += [line.strip() for line in path.read_text().splitlines()
                  if re.match(r"(from \S+ import |import )", line)]  # fmt: skip
    assert any("clustermine.datasets" in line for line in lines)  # the class-name probe
    code = "\n".join(
        ["import sys", *lines,
         "heavy = {'torch', 'numpy', 'pandas', 'matplotlib', 'h5py'} & set(sys.modules)",
         "print(sorted(heavy))"]  # fmt: skip
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)  # fmt: skip
    assert out.stdout.strip() == "[]", lines
