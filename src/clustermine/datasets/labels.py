"""Class names and labels: class-name files, class maps of image folders, and the labels of
file lists and tar shards (integers or class names), every bad one named by its place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from clustermine.text_lines import read_lines

from .errors import DatasetError

_INTEGER = re.compile(r"-?[0-9]+")


def read_class_map(path: str | Path) -> dict[str, str]:
    """``folder<TAB or space>name`` per line, e.g. ``n01440764 tench``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"class-name map {path} does not exist")
    mapping = {}
    for n, line in enumerate(read_lines(path, "class map", DatasetError), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{path}:{n}: expected '<folder> <class name>', got {line!r}")
        mapping[parts[0].strip()] = parts[1].strip()
    return mapping


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (label i = line i); blank lines are skipped."""
    if not Path(path).is_file():
        raise DatasetError(f"class-name file {path} does not exist")
    return [ln.strip() for ln in read_lines(path, "class-name file", DatasetError) if ln.strip()]


def resolve_labels(
    raw: Sequence[str | None],
    places: Sequence[str],
    names: list[str] | None = None,
    names_file: str | Path | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """Labels from the label texts of a dataset's entries (``places[i]`` says where entry i
    is, e.g. ``list.txt:7``): none at all (every label -1), integers (kept as they are), or
    class names (looked up in ``names`` from ``names_file``, else numbered in sorted order).
    An entry without a label among labelled ones, a name not among ``names``, integers mixed
    with names and an integer beyond ``names`` are errors naming the entry."""
    given = [i for i, lab in enumerate(raw) if lab is not None]
    if not given:
        return np.full(len(raw), -1, dtype=np.int64), names
    if len(given) < len(raw):
        i = next(i for i, lab in enumerate(raw) if lab is None)
        raise DatasetError(
            f"{places[i]} has no label, while {len(given):,} of the {len(raw):,} entries have "
            "one: give every entry a label, or none"
        )
    integer = [bool(_INTEGER.fullmatch(lab)) for lab in raw]
    if all(integer):
        labels = np.asarray([int(lab) for lab in raw], dtype=np.int64)
        if names is not None and labels.max(initial=-1) >= len(names):
            i = int(labels.argmax())
            raise DatasetError(
                f"{places[i]}: label {labels[i]} but only {len(names)} class names in "
                f"{names_file} (labels count from 0)"
            )
        return labels, names
    if names is None:
        if any(integer):
            i, j = integer.index(True), integer.index(False)
            raise DatasetError(
                f"{places[i]}: label {raw[i]!r} is an integer, while {places[j]} has the class "
                f"name {raw[j]!r}: labels must be all integers or all class names"
            )
        names = sorted(set(raw))
    lookup = {name: i for i, name in enumerate(names)}
    unknown = next((i for i, lab in enumerate(raw) if lab not in lookup), None)
    if unknown is not None:
        raise DatasetError(
            f"{places[unknown]}: label {raw[unknown]!r} is not one of the {len(names)} class "
            f"names of {names_file}"
        )
    return np.asarray([lookup[lab] for lab in raw], dtype=np.int64), names
