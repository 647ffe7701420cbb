"""Tar shards in the webdataset layout as a dataset: one row per image member."""

from __future__ import annotations

import tarfile
from pathlib import Path

from clustermine.image_files import UnusableFileName, require_utf8

from .errors import DatasetError
from .index import DatasetIndex
from .labels import read_class_names, resolve_labels
from .tar_shards import tar_names, tar_samples


def index_webdataset(
    root: str | Path, tars: str | list[str], class_names: str | Path | None = None
) -> DatasetIndex:
    """Index tar shards of ``key.jpg`` (+ ``key.cls``: integer label, ``key.txt``: class
    name): one row per image member, path ``<tar>/<member>``, rows grouped by tar."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"webdataset: root {root} is not a directory")
    paths: list[str] = []
    places: list[str] = []
    cls: list[str | None] = []
    txt: list[str | None] = []
    for name in tar_names(root, tars):
        if not (root / name).is_file():
            raise DatasetError(f"webdataset: tar shard {root / name} does not exist")
        try:
            samples = tar_samples(root / name)
        except (tarfile.TarError, OSError) as err:
            raise DatasetError(f"webdataset: {root / name} is not a readable tar file ({err})")
        for member, labels in samples:
            paths.append(f"{name}/{member}")
            places.append(f"{root / name}: {member}")
            cls.append(labels.get("cls"))
            txt.append(labels.get("txt"))
    if not paths:
        raise DatasetError(f"webdataset: no image members in the tar shards under {root}")
    try:
        require_utf8(paths, root)
    except UnusableFileName as err:
        raise DatasetError(str(err)) from None
    names = read_class_names(class_names) if class_names else None
    if any(c is not None for c in cls):
        bad = next((i for i, c in enumerate(cls) if c is None or not c.lstrip("-").isdigit()), None)
        if bad is not None:
            raise DatasetError(
                f"{places[bad]}: every image needs an integer .cls label, got {cls[bad]!r}"
            )
        if names is None and all(t is not None for t in txt):
            by_class = dict(zip((int(c) for c in cls), txt))
            if len(set(zip(cls, txt))) == len(by_class):  # one name per class
                names = [by_class.get(i, str(i)) for i in range(max(by_class) + 1)]
        labels, names = resolve_labels(cls, places, names, class_names)
    else:
        labels, names = resolve_labels(txt, places, names, class_names)
    return DatasetIndex(str(root), paths, labels, names)
