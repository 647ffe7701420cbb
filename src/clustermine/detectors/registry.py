"""OOD scores by name (``methods.<slug>.score``), as declared in
:mod:`clustermine.catalog.scores`, and the one way to open a detector file."""

from __future__ import annotations

import os

import h5py

from clustermine import catalog
from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.h5io import EmbeddingFileError, read_attrs


def get_detector(name: str) -> type[Detector]:
    """The detector class of score ``name`` (imported on first use)."""
    try:
        cls = catalog.score(name).load()
    except catalog.CatalogError as err:
        raise DetectorConfigError(str(err)) from err
    if not (isinstance(cls, type) and issubclass(cls, Detector)) or cls.name != name:
        raise DetectorConfigError(
            f"score {name!r}: {catalog.score(name).implementation} is not a Detector named "
            f"{name!r}; fix its catalog entry"
        )
    return cls


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
