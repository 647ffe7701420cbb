"""The index file (``resources/index/<dataset>.tsv``, docs/file-formats.md): a JSON header
line, then ``path<TAB>label`` rows, paths escaped so that every image is one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .index import DatasetIndex

log = logging.getLogger(__name__)

# Characters a path may hold that would break a line of the index: escaped as in C strings.
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}


def escape_path(path: str) -> str:
    """A path as one index cell: backslash, tab, newline and carriage return escaped."""
    return "".join(_ESCAPES.get(ch, ch) for ch in path)


def unescape_path(cell: str) -> str:
    out, chars = [], iter(cell)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt not in _UNESCAPES:
                raise ValueError(f"bad escape \\{nxt} in {cell!r}")
            out.append(_UNESCAPES[nxt])
        else:
            out.append(ch)
    return "".join(out)


def write_index(path: str | Path, index: DatasetIndex) -> None:
    """The index TSV: a JSON header line, then ``path<TAB>label`` rows; paths holding a tab,
    newline or backslash are escaped (and logged), so every image is one line."""
    from clustermine.atomic import atomic_path

    odd = [p for p in index.paths if any(ch in p for ch in "\t\n\r")]
    for p in odd[:20]:
        log.warning("image path %r holds a tab or line break; it is escaped in the index", p)
    header = {"root": index.root, "class_names": index.class_names, "params": index.params}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("# " + json.dumps(header, default=str) + "\n")
        f.write("path\tlabel\n")
        for p, lab in zip(index.paths, index.labels):
            f.write(f"{escape_path(p)}\t{int(lab)}\n")


def read_index(path: str | Path) -> DatasetIndex:
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2 or not lines[0].startswith("# {") or lines[1] != "path\tlabel":
        raise DatasetError(
            f"{path}: not a dataset index written by clustermine; delete it so that rule "
            "index_dataset rewrites it"
        )
    header = json.loads(lines[0][2:])
    paths, labels = [], []
    for number, line in enumerate(lines[2:], start=3):
        cell, tab, label = line.rpartition("\t")
        try:
            if not tab or not label.lstrip("-").isdigit():
                raise ValueError("expected '<path><TAB><integer label>'")
            paths.append(unescape_path(cell))
        except ValueError as err:
            raise DatasetError(
                f"{path}:{number}: malformed index line {line[:80]!r} ({err}); delete the "
                "index so that rule index_dataset rewrites it"
            ) from None
        labels.append(int(label))
    return DatasetIndex(
        header["root"],
        paths,
        np.asarray(labels, dtype=np.int64),
        header.get("class_names"),
        header.get("params", {}),
    )
