"""OOD scores by name: the names used as ``methods.<slug>.score`` in the config."""

from __future__ import annotations

import os

import h5py

from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.energy import EnergyDetector
from clustermine.detectors.eq1 import Eq1Detector
from clustermine.detectors.eq1_grouped import Eq1GroupedDetector
from clustermine.detectors.mahalanobis import MahalanobisDetector
from clustermine.detectors.maxlogit import MaxLogitDetector
from clustermine.detectors.mcm import MCMDetector
from clustermine.detectors.plp import PLPDetector
from clustermine.detectors.relative_mahalanobis import RelativeMahalanobisDetector
from clustermine.h5io import EmbeddingFileError, read_attrs

DETECTORS: dict[str, type[Detector]] = {
    "eq1": Eq1Detector,
    "eq1_grouped": Eq1GroupedDetector,
    "mcm": MCMDetector,
    "maxlogit": MaxLogitDetector,
    "energy": EnergyDetector,
    "mahalanobis": MahalanobisDetector,
    "relative_mahalanobis": RelativeMahalanobisDetector,
    "plp": PLPDetector,
}

# Method keys that pick inputs rather than score parameters.
INPUT_KEYS = ("score", "labels")


def get_detector(name: str) -> type[Detector]:
    if name not in DETECTORS:
        raise DetectorConfigError(f"unknown score {name!r}; known scores: {sorted(DETECTORS)}")
    return DETECTORS[name]


def detector_params(method: dict) -> dict:
    """The score parameters of one ``methods`` entry."""
    return {k: v for k, v in method.items() if k not in INPUT_KEYS}


def load_detector(
    path: str | os.PathLike, device: str | None = None, budget_bytes: int | None = None
) -> Detector:
    """Open a detector file written by :meth:`Detector.save`, whatever its score."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: detector file does not exist")
    with h5py.File(path, "r") as f:
        attrs = read_attrs(f)
        if attrs.get("kind") != "detector" or "detector" not in attrs:
            raise EmbeddingFileError(f"{path}: not a clustermine detector file")
        det = get_detector(attrs["detector"])._from_file(f, path)
    return det.set_runtime(device, budget_bytes)
