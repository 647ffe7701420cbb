"""Label miners by name: the names used as ``label_sets.<slug>.miner`` in the config."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from clustermine.labelsets import LabelSet
from clustermine.mining.clustermine import mine_clustermine
from clustermine.mining.gt import mine_gt
from clustermine.mining.gt_aug import mine_gt_aug
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.neglabel import mine_neglabel
from clustermine.mining.posmine import mine_posmine

Miner = Callable[..., LabelSet]

MINERS: dict[str, Miner] = {
    "gt": mine_gt,
    "posmine": mine_posmine,
    "clustermine": mine_clustermine,
    "neglabel": mine_neglabel,
    "gt_aug": mine_gt_aug,
}

# Label-set keys that choose inputs (which clustering; which label set's |Y_pos| to match)
# rather than miner parameters.
INPUT_KEYS = ("miner", "clusterer", "C", "match_positives_of")
NEEDS_IMAGES = {"posmine", "clustermine"}
NEEDS_CLUSTERS = {"clustermine"}
NEEDS_CLASS_NAMES = {"gt", "neglabel", "gt_aug"}


def get_miner(name: str) -> Miner:
    if name not in MINERS:
        raise MinerConfigError(f"unknown miner {name!r}; known miners: {sorted(MINERS)}")
    return MINERS[name]


def miner_defaults(name: str) -> dict[str, Any]:
    sig = inspect.signature(get_miner(name))
    return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}


def miner_params(label_set: Mapping[str, Any]) -> dict[str, Any]:
    """The miner parameters of one ``label_sets`` entry (input-selecting keys removed)."""
    return {k: v for k, v in label_set.items() if k not in INPUT_KEYS}


def mine_labels(
    name: str, inputs: MiningInputs, params: Mapping[str, Any] | None = None
) -> LabelSet:
    """Run miner ``name`` with ``params`` (unknown keys are an error naming the accepted ones)."""
    params = dict(params or {})
    defaults = miner_defaults(name)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise MinerConfigError(
            f"miner {name!r} has no parameter(s) {unknown}; accepted: {sorted(defaults)}"
        )
    return get_miner(name)(inputs, **params)
