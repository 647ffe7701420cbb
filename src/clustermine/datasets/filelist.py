"""File lists: a text file of image paths relative to a root, each with an optional label
(config/README.md). The data check and the index read a list through :func:`read_filelist`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clustermine.text_lines import read_lines

from .errors import DatasetError
from .index import DatasetIndex
from .labels import read_class_names, resolve_labels


@dataclass
class FileList:
    """The entries of a file list: path, label text (None: no label) and where each is
    (``list.txt:7: a/b.png``, for messages)."""

    paths: list[str]
    labels: list[str | None]
    places: list[str]


def split_entry(line: str) -> list[str]:
    """A line of a file list as [path] or [path, label]: split at tabs when it holds one
    (then paths and labels may hold spaces), else at whitespace."""
    if "\t" in line:
        return [part.strip() for part in line.split("\t") if part.strip()]
    return line.split()


def read_filelist(list_file: str | Path) -> FileList:
    """Lines ``relative/path [label]``; blank lines and ``#`` comments are skipped; a line of
    more than two fields is an error naming it."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise DatasetError(f"filelist: list file {list_file} does not exist")
    entries = FileList([], [], [])
    for number, line in enumerate(read_lines(list_file, "file list", DatasetError), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = split_entry(line)
        if len(parts) > 2:
            raise DatasetError(
                f"{list_file}:{number}: expected '<path> [label]', got {len(parts)} fields in "
                f"{line!r}; separate path and label by a tab when either holds spaces"
            )
        entries.paths.append(parts[0])
        entries.labels.append(parts[1] if len(parts) > 1 else None)
        entries.places.append(f"{list_file}:{number}: {parts[0]}")
    if not entries.paths:
        raise DatasetError(f"filelist: {list_file} lists no images")
    return entries


def index_filelist(
    list_file: str | Path, root: str | Path, class_names: str | Path | None = None
) -> DatasetIndex:
    """Lines ``relative/path [label]``; labels are integers (kept as they are) or class names
    (numbered as in ``class_names``, else in sorted order); every line has a label or none."""
    entries = read_filelist(list_file)
    names = read_class_names(class_names) if class_names else None
    labels, names = resolve_labels(entries.labels, entries.places, names, class_names)
    return DatasetIndex(str(root), entries.paths, labels, names)
