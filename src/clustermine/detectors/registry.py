"""OOD scores by name (``methods.<slug>.score``), as declared in
:mod:`clustermine.catalog.scores`, and the one way to open a detector file."""

from __future__ import annotations

import os

import h5py

from clustermine import catalog
from clustermine.detectors.base import (
    FORMAT_VERSION,
    Detector,
    DetectorConfigError,
    DetectorFileError,
)
from clustermine.h5io import read_attrs
from clustermine.missing_files import missing_file


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
    """Open a detector file written by :meth:`Detector.save`, whatever its score.

    A missing file is a ``FileNotFoundError``; a truncated, junk or foreign file, or one of a
    newer format, is a :class:`DetectorFileError` naming the path.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(missing_file(path, "detector file"))
    redo = (
        "; it was probably cut short while being copied or written: copy it again, or delete "
        "it and rerun the workflow (rule fit_detector) to fit it again"
    )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DetectorFileError(f"{path}: not a readable detector file ({err}){redo}") from err
    with f:
        attrs = read_attrs(f)
        if attrs.get("kind") != "detector" or "detector" not in attrs:
            raise DetectorFileError(
                f"{path}: not a clustermine detector file (no kind=detector attribute); "
                "detector files are results/{model}/detectors/{idset}.{method}.h5"
            )
        version = attrs.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DetectorFileError(
                f"{path}: detector file format {version!r} is newer than this clustermine "
                f"reads ({FORMAT_VERSION}); upgrade clustermine"
            )
        try:
            det = get_detector(attrs["detector"])._from_file(f, path)
        except (KeyError, OSError) as err:
            raise DetectorFileError(f"{path}: damaged detector file ({err}){redo}") from err
    return det.set_runtime(device, budget_bytes)
