"""OOD scores ("detectors"): fit once from ID-train embeddings and label texts, then score
batches of image embeddings (higher = more in-distribution). One module per score; the scores
are declared by name in :mod:`clustermine.catalog.scores`."""

from clustermine.detectors.base import Detector, DetectorConfigError, DetectorFileError
from clustermine.detectors.calibration import Calibration
from clustermine.detectors.registry import get_detector, load_detector

__all__ = [
    "Calibration",
    "Detector",
    "DetectorConfigError",
    "DetectorFileError",
    "get_detector",
    "load_detector",
]
