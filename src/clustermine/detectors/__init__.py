"""OOD scores ("detectors"): fit once from ID-train embeddings and label texts, then score
batches of image embeddings (higher = more in-distribution). One module per score;
:data:`DETECTORS` maps config names to them."""

from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.registry import (
    DETECTORS,
    INPUT_KEYS,
    detector_params,
    get_detector,
    load_detector,
)

__all__ = [
    "DETECTORS",
    "INPUT_KEYS",
    "Detector",
    "DetectorConfigError",
    "detector_params",
    "get_detector",
    "load_detector",
]
