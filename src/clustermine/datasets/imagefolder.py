"""Image folders: one sub-folder of images per class (config/README.md). The data check and the
index read a folder through :func:`list_class_folders`, so they agree on every file."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clustermine.image_files import IMAGE_EXTENSIONS, UnusableFileName, list_image_files

from .errors import DatasetError
from .index import DatasetIndex
from .labels import read_class_map

log = logging.getLogger(__name__)


@dataclass
class ClassFolders:
    """What an image folder holds: ``paths`` (relative to the root, grouped by class in
    class order) and ``labels`` of the entries of its classes, readable or ``broken``
    (clustermine.image_files); ``empty`` sub-folders hold no image and are no class;
    ``outside`` are entries directly under the root, in no class."""

    classes: list[str]
    paths: list[str]
    labels: list[int]
    broken: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    @property
    def readable(self) -> int:
        return len(self.paths) - len(self.broken)


def list_class_folders(root: str | Path) -> ClassFolders:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"imagefolder: root {root} is not a directory")
    with os.scandir(root) as entries:
        folders = sorted(e.name for e in entries if e.is_dir())
    try:
        listing = list_image_files(root)
    except UnusableFileName as err:
        raise DatasetError(str(err)) from None
    candidates = set(folders)
    by_class: dict[str, list[str]] = {}
    outside = []
    for path in listing.paths:
        folder = path.partition("/")[0]
        if folder in candidates:
            by_class.setdefault(folder, []).append(path)
        else:
            outside.append(path)
    classes = [f for f in folders if f in by_class]
    paths = [p for f in classes for p in by_class[f]]
    labels = [label for label, f in enumerate(classes) for _ in by_class[f]]
    broken = {p: listing.broken[p] for p in paths if p in listing.broken}
    empty = [f for f in folders if f not in by_class]
    return ClassFolders(classes, paths, labels, broken, empty, outside)


def index_imagefolder(root: str | Path, class_map: str | Path | None = None) -> DatasetIndex:
    """Class sub-folders of images, symbolic links followed; a sub-folder without images is
    not a class, and images directly under the root are in none (both logged); entries that
    cannot be read (a dangling link, a loop) stay in the index, so that encoding counts them
    as unreadable."""
    root = Path(root)
    found = list_class_folders(root)
    for folder in found.empty:
        log.warning("imagefolder %s: %r holds no images and is not a class", root, folder)
    if found.outside:
        log.warning(
            "imagefolder %s: %d images directly under the root are in no class folder and are "
            "left out: %s", root, len(found.outside), found.outside[:5],
        )  # fmt: skip
    if not found.classes:
        if not found.empty:
            raise DatasetError(f"imagefolder: {root} has no class sub-folders")
        raise DatasetError(f"imagefolder: no images under {root} ({sorted(IMAGE_EXTENSIONS)})")
    for path, why in list(found.broken.items())[:20]:
        log.warning("imagefolder %s: %s cannot be read (%s); counted as unreadable", root, path,
                    why)  # fmt: skip
    if len(found.classes) == 1:
        log.warning(
            "imagefolder %s has a single class (%r): scores that compare ID classes (MCM, "
            "relative Mahalanobis, PLP) are then constant on it",
            root,
            found.classes[0],
        )
    names = found.classes
    if class_map:
        mapping = read_class_map(class_map)
        missing = [f for f in names if f not in mapping]
        if missing:
            raise DatasetError(
                f"class-name map {class_map} lacks {len(missing)} folders, e.g. {missing[:3]}"
            )
        names = [mapping[f] for f in names]
    return DatasetIndex(str(root), found.paths, np.asarray(found.labels, dtype=np.int64), names)
