"""clustermine: label-free visual OOD detection with CLIP models (ClusterMine and baselines)."""

__version__ = "0.1.0"
