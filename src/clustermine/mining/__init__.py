"""Label mining: turn a text corpus (and ID-train images) into positive and negative labels.

One module per miner; :data:`MINERS` maps config names to them.
"""

from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import quantile_similarity, select_negatives
from clustermine.mining.registry import (
    INPUT_KEYS,
    MINERS,
    NEEDS_CLASS_NAMES,
    NEEDS_CLUSTERS,
    NEEDS_IMAGES,
    get_miner,
    mine_labels,
    miner_defaults,
    miner_params,
)

__all__ = [
    "INPUT_KEYS",
    "MINERS",
    "NEEDS_CLASS_NAMES",
    "NEEDS_CLUSTERS",
    "NEEDS_IMAGES",
    "MinerConfigError",
    "MiningInputs",
    "get_miner",
    "mine_labels",
    "miner_defaults",
    "miner_params",
    "quantile_similarity",
    "select_negatives",
]
