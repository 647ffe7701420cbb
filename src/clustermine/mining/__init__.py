"""Label mining: turn a text corpus (and ID-train images) into positive and negative labels.

One module per miner; the miners are declared by name in :mod:`clustermine.catalog.miners`.
"""

from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import quantile_similarity, select_negatives
from clustermine.mining.registry import mine_labels, miner_plugin

__all__ = [
    "MinerConfigError",
    "MiningInputs",
    "mine_labels",
    "miner_plugin",
    "quantile_similarity",
    "select_negatives",
]
