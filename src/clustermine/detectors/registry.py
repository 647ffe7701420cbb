"""OOD scores by name (``methods.<slug>.score``), as declared in
:mod:`clustermine.catalog.scores`, and the one way to open a detector file."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import h5py

from clustermine import catalog
from clustermine.detectors.base import (
    FORMAT_VERSION,
    Detector,
    DetectorConfigError,
    DetectorFileError,
    empty_texts,
    read_texts,
)
from clustermine.h5io import TextEmbeddings, read_attrs
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


@contextlib.contextmanager
def _detector_file(path: str | os.PathLike) -> Iterator[tuple[h5py.File, dict]]:
    """An open detector file and its attributes, its kind and format checked."""
    if not os.path.exists(path):
        raise FileNotFoundError(missing_file(path, "detector file"))
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DetectorFileError(f"{path}: not a readable detector file ({err}){REDO}") from err
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
            yield f, attrs
        except (KeyError, OSError) as err:
            raise DetectorFileError(f"{path}: damaged detector file ({err}){REDO}") from err


REDO = (
    "; it was probably cut short while being copied or written: copy it again, or delete "
    "it and rerun the workflow (rule fit_detector) to fit it again"
)


def load_detector(
    path: str | os.PathLike, device: str | None = None, budget_bytes: int | None = None
) -> Detector:
    """Open a detector file written by :meth:`Detector.save`, whatever its score.

    A missing file is a ``FileNotFoundError``; a truncated, junk or foreign file, or one of a
    newer format, is a :class:`DetectorFileError` naming the path.
    """
    with _detector_file(path) as (f, attrs):
        det = get_detector(attrs["detector"])._from_file(f, path)
    return det.set_runtime(device, budget_bytes)


def read_detector_texts(path: str | os.PathLike) -> tuple[str, TextEmbeddings, TextEmbeddings]:
    """(score name, positive texts, negative texts) of a detector file, without its fitted
    state: the labels its score uses (catalog needs ``positives``, ``negatives``; the others
    empty), checked as :func:`load_detector` checks the file."""
    with _detector_file(path) as (f, attrs):
        plugin = get_detector(attrs["detector"]).plugin()
        groups = [g for g, need in (("pos", "positives"), ("neg", "negatives")) if plugin.has(need)]
        texts = read_texts(f, groups)
    empty = texts.get("pos", empty_texts()), texts.get("neg", empty_texts())
    return str(attrs["detector"]), *empty
