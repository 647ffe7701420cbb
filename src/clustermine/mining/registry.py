"""Run a label miner by name (``label_sets.<slug>.miner``); the names, parameters and defaults
are declared in :mod:`clustermine.catalog.miners`."""

from __future__ import annotations

from typing import Any, Mapping

from clustermine import catalog
from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs


def miner_plugin(name: str) -> catalog.Plugin:
    try:
        return catalog.miner(name)
    except catalog.CatalogError as err:
        raise MinerConfigError(str(err)) from err


def mine_labels(
    name: str, inputs: MiningInputs, params: Mapping[str, Any] | None = None
) -> LabelSet:
    """Run miner ``name`` with ``params`` (defaults from the catalog; an unknown key is an
    error naming the accepted ones)."""
    plugin = miner_plugin(name)
    try:
        resolved = plugin.resolve(params)
    except catalog.CatalogError as err:
        raise MinerConfigError(str(err)) from err
    labels = plugin.load()(inputs, **resolved)
    # Every label set records the parameters that made it; a miner overrides only those it
    # changed (e.g. PosMine's threshold, moot at a fixed number of positives).
    labels.params = {**resolved, **labels.params}
    return labels
