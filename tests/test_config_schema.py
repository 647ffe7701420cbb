"""The config schema names exactly the parameters the library accepts, so that a misspelt key is
reported when the workflow starts rather than when a job runs."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO

from clustermine.clustering.kmeans import KMeansConfig
from clustermine.clustering.temi import TEMIConfig
from clustermine.detectors.registry import DETECTORS
from clustermine.mining import INPUT_KEYS, MINERS, miner_defaults
from clustermine.prompts import PROMPT_SETS

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def branches(section: str, key: str) -> dict[str, set[str]]:
    """Parameter names the schema allows per value of ``key`` (e.g. per miner)."""
    entry = SCHEMA["properties"][section]["additionalProperties"]
    out = {}
    for branch in entry["allOf"]:
        cond = branch["if"]["properties"][key]
        values = [cond["const"]] if "const" in cond else cond["enum"]
        then = branch["then"]
        names = set(then.get("properties", {}))
        ref = then.get("$ref")
        if ref:
            names |= set(SCHEMA["definitions"][ref.split("/")[-1]]["properties"])
        for value in values:
            out.setdefault(value, set()).update(names)
    return out


def test_miner_parameters_match_the_library():
    allowed = branches("label_sets", "miner")
    assert set(allowed) == set(MINERS)
    for miner in MINERS:
        inputs = {"clusterer", "C"} if miner == "clustermine" else set()
        inputs |= {"match_positives_of"} if miner == "posmine" else set()
        assert allowed[miner] == set(miner_defaults(miner)) | inputs, miner
    assert set(INPUT_KEYS) == {"miner", "clusterer", "C", "match_positives_of"}


def test_score_parameters_match_the_library():
    allowed = branches("methods", "score")
    enum = SCHEMA["properties"]["methods"]["additionalProperties"]["properties"]["score"]["enum"]
    assert set(enum) == set(DETECTORS)
    for name, detector in DETECTORS.items():
        assert allowed.get(name, set()) == set(detector.defaults), name


@pytest.mark.parametrize("method, config", [("temi", TEMIConfig), ("kmeans", KMeansConfig)])
def test_clusterer_parameters_match_the_library(method, config):
    fields = {f.name for f in dataclasses.fields(config)} - {"num_clusters"}
    assert branches("clusterers", "method")[method] == fields | {"method"}


def test_prompt_sets_match_the_library():
    assert set(SCHEMA["definitions"]["prompt_set"]["enum"]) == set(PROMPT_SETS)
