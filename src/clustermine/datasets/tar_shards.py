"""Tar shards in the webdataset layout: shard names and patterns, member names, and the samples
of one tar read from its headers (and its small label members), never an image. Numpy-free."""

from __future__ import annotations

import glob
import os
import re
import tarfile
from pathlib import Path

from clustermine.image_files import IMAGE_EXTENSIONS

from .errors import DatasetError

_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """webdataset's shard notation: ``train-{000000..000146}.tar`` (zero-padded numeric
    ranges) and ``{a,b}`` alternatives, expanded in order."""
    found = _BRACE.search(pattern)
    if not found:
        return [pattern]
    head, tail, body = pattern[: found.start()], pattern[found.end() :], found.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.groups()
        width = len(lo) if lo.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        items = body.split(",")
    return [head + item + rest for item in items for rest in expand_braces(tail)]


def tar_names(root: str | Path, tars: str | list[str]) -> list[str]:
    """The tar files of a webdataset dataset, relative to ``root``, in order: a list, a brace
    pattern (``shard-{0000..0099}.tar``) or a glob pattern (``*.tar``, sorted)."""
    if isinstance(tars, (list, tuple)):
        names = [str(t) for t in tars]
    elif any(c in tars for c in "*?["):
        names = sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, tars)))
    else:
        names = expand_braces(tars)
    bad = [n for n in names if not n.endswith(".tar")]
    if bad:
        raise DatasetError(
            f"webdataset: tar shards must be uncompressed .tar files (read member by member), "
            f"got {bad[:3]}"
        )
    return names


def split_member(path: str) -> tuple[str, str]:
    """An index path ``<tar>/<member>`` as (tar, member name)."""
    i = path.find(".tar/")
    if i < 0:
        raise DatasetError(f"{path!r} is not a '<shard>.tar/<member>' path of a tar dataset")
    return path[: i + 4], path[i + 5 :]


def tar_starts(paths: list[str]) -> list[int]:
    """First row of every tar in an index of a tar dataset (its rows are grouped by tar)."""
    starts, last = [], None
    for row, p in enumerate(paths):
        tar = split_member(p)[0]
        if tar != last:
            starts.append(row)
            last = tar
    return starts


def sample_key(name: str) -> tuple[str, str]:
    """webdataset's split of a member name into sample key and extension: the extension is
    everything after the first dot of the file name (``a/b.seg.png`` -> ``a/b``, ``seg.png``)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def is_image_ext(ext: str) -> bool:
    return f".{ext.rsplit('.', 1)[-1]}" in IMAGE_EXTENSIONS


def tar_samples(path: str | Path, read_labels: bool = True) -> list[tuple[str, dict[str, str]]]:
    """The samples of one tar, in order: (image member name, {"cls"/"txt": text}); only
    headers and the small label members are read, never an image. A label member that is not
    UTF-8 text is an error naming it (a byte-order mark at its start is dropped)."""
    samples: dict[str, dict] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = sample_key(member.name)
            sample = samples.setdefault(key, {})
            if is_image_ext(ext):
                sample.setdefault("image", member.name)
            elif read_labels and ext in ("cls", "txt"):
                data = tar.extractfile(member).read()
                try:
                    sample[ext] = data.decode("utf-8-sig").strip()
                except UnicodeDecodeError:
                    raise DatasetError(
                        f"{path}: {member.name}: the label is not UTF-8 text ({data[:40]!r}); "
                        "write label members as UTF-8"
                    ) from None
    return [(s.pop("image"), s) for s in samples.values() if "image" in s]
