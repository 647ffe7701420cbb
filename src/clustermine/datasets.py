"""Image datasets declared in the config: image folders, file lists and tar shards in the
webdataset layout (config/README.md).

A dataset is first turned into an *index* (relative paths, labels, class names, root), a
small TSV that the encoding shards read, so big directory trees are scanned once.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


class DatasetError(ValueError):
    pass


@dataclass
class DatasetIndex:
    root: str
    paths: list[str]
    labels: np.ndarray
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def shard(self, shard: int, num_shards: int) -> tuple[int, int]:
        """Row range [start, stop) of one shard: contiguous, sizes differing by at most one;
        for tar shards whole tars (consecutive ones) when there are at least as many tars as
        shards, so that each encoding job reads its own tars."""
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} out of range for {num_shards} shards")
        n = len(self)
        if self.params.get("type") == "webdataset":
            starts = tar_starts(self.paths)
            if len(starts) >= num_shards:
                bounds = [*starts, n]
                t = len(starts)
                return bounds[shard * t // num_shards], bounds[(shard + 1) * t // num_shards]
        return shard * n // num_shards, (shard + 1) * n // num_shards


def _read_class_map(path: Path) -> dict[str, str]:
    """``folder<TAB or space>name`` per line, e.g. ``n01440764 tench``."""
    if not path.exists():
        raise DatasetError(f"class-name map {path} does not exist")
    mapping = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{path}:{n}: expected '<folder> <class name>', got {line!r}")
        mapping[parts[0].strip()] = parts[1].strip()
    return mapping


def index_imagefolder(root: str | Path, class_map: str | Path | None = None) -> DatasetIndex:
    """Class sub-folders of images; a sub-folder without images is not a class (logged)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"imagefolder: root {root} is not a directory")
    candidates = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not candidates:
        raise DatasetError(f"imagefolder: {root} has no class sub-folders")
    folders: list[str] = []
    paths: list[str] = []
    labels: list[int] = []
    for folder in candidates:
        files = sorted(
            p for p in (root / folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            log.warning("imagefolder %s: %r holds no images and is not a class", root, folder)
            continue
        paths += [str(p.relative_to(root)) for p in files]
        labels += [len(folders)] * len(files)
        folders.append(folder)
    if not paths:
        raise DatasetError(f"imagefolder: no images under {root} ({sorted(IMAGE_EXTENSIONS)})")
    if len(folders) == 1:
        log.warning(
            "imagefolder %s has a single class (%r): scores that compare ID classes (MCM, "
            "relative Mahalanobis, PLP) are then constant on it",
            root,
            folders[0],
        )
    names = folders
    if class_map:
        mapping = _read_class_map(Path(class_map))
        missing = [f for f in folders if f not in mapping]
        if missing:
            raise DatasetError(
                f"class-name map {class_map} lacks {len(missing)} folders, e.g. {missing[:3]}"
            )
        names = [mapping[f] for f in folders]
    return DatasetIndex(str(root), paths, np.asarray(labels, dtype=np.int64), names)


def index_filelist(
    list_file: str | Path, root: str | Path, class_names: str | Path | None = None
) -> DatasetIndex:
    """Lines ``relative/path [label]``; labels are integers or class names."""
    list_file = Path(list_file)
    if not list_file.exists():
        raise DatasetError(f"filelist: list file {list_file} does not exist")
    paths: list[str] = []
    raw_labels: list[str | None] = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        paths.append(parts[0])
        raw_labels.append(parts[1] if len(parts) > 1 else None)
    if not paths:
        raise DatasetError(f"filelist: {list_file} lists no images")
    names = _read_class_names(class_names) if class_names else None
    labels, names = _resolve_labels(raw_labels, names, f"filelist: {list_file}")
    return DatasetIndex(str(root), paths, labels, names)


def _read_class_names(path: str | Path) -> list[str]:
    """One class name per line (label i = line i)."""
    if not Path(path).is_file():
        raise DatasetError(f"class-name file {path} does not exist")
    return [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


def _resolve_labels(
    raw_labels: list[str | None], names: list[str] | None, where: str
) -> tuple[np.ndarray, list[str] | None]:
    """Labels from raw label strings: none (-1), integers, or class names (looked up in
    ``names``, else sorted)."""
    if all(lab is None for lab in raw_labels):
        labels = np.full(len(raw_labels), -1, dtype=np.int64)
    elif all(lab is not None and lab.lstrip("-").isdigit() for lab in raw_labels):
        labels = np.asarray([int(lab) for lab in raw_labels], dtype=np.int64)
    else:
        text = [lab or "" for lab in raw_labels]
        names = names or sorted(set(t for t in text if t))
        lookup = {n: i for i, n in enumerate(names)}
        labels = np.asarray([lookup.get(t, -1) for t in text], dtype=np.int64)
    if names is not None and labels.max(initial=-1) >= len(names):
        raise DatasetError(f"{where} has label {labels.max()} but only {len(names)} class names")
    return labels, names


# --- tar shards in the webdataset layout ---------------------------------------------------

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
    headers and the small label members are read, never an image."""
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
                sample[ext] = data.decode("utf-8", errors="replace").strip()
    return [(s.pop("image"), s) for s in samples.values() if "image" in s]


def index_webdataset(
    root: str | Path, tars: str | list[str], class_names: str | Path | None = None
) -> DatasetIndex:
    """Index tar shards of ``key.jpg`` (+ ``key.cls``: integer label, ``key.txt``: class
    name): one row per image member, path ``<tar>/<member>``, rows grouped by tar."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"webdataset: root {root} is not a directory")
    paths: list[str] = []
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
            cls.append(labels.get("cls"))
            txt.append(labels.get("txt"))
    if not paths:
        raise DatasetError(f"webdataset: no image members in the tar shards under {root}")
    names = _read_class_names(class_names) if class_names else None
    where = f"webdataset: {root}"
    if any(c is not None for c in cls):
        bad = next((c for c in cls if c is None or not c.lstrip("-").isdigit()), None)
        if bad is not None or None in cls:
            raise DatasetError(f"{where}: every image needs an integer .cls label, got {bad!r}")
        if names is None and all(t is not None for t in txt):
            by_class = dict(zip((int(c) for c in cls), txt))
            if len(set(zip(cls, txt))) == len(by_class):  # one name per class
                names = [by_class.get(i, str(i)) for i in range(max(by_class) + 1)]
        labels, names = _resolve_labels(cls, names, where)
    else:
        labels, names = _resolve_labels(txt, names, where)
    return DatasetIndex(str(root), paths, labels, names)


def subsample(index: DatasetIndex, limit: int | None, seed: int) -> DatasetIndex:
    """Seeded subsample of ``limit`` items, kept in their original order."""
    if not limit or limit >= len(index):
        return index
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(index), size=int(limit), replace=False))
    params = {**index.params, "limit": int(limit), "subsample_seed": int(seed)}
    return DatasetIndex(
        index.root, [index.paths[i] for i in keep], index.labels[keep], index.class_names, params
    )


def class_names_available(spec: Mapping[str, Any]) -> bool | None:
    """Whether a declared dataset will carry class names, cheaply (the workflow asks this when
    it parses the config): None when that cannot be told without the data (a file list or
    precomputed file not there yet). Image folders always name their classes; a file list
    does with a class-name file or name labels (its first entry is looked at); a precomputed
    embedding file does when it holds ``class_names``."""
    kind = spec.get("type")
    if kind == "imagefolder":
        return True
    if kind == "filelist":
        if spec.get("class_names"):
            return True
        try:
            with open(spec["list"], encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if parts and not parts[0].startswith("#"):
                        return len(parts) > 1 and not parts[1].lstrip("-").isdigit()
        except OSError:
            return None
        return None
    if kind == "webdataset":
        if spec.get("class_names"):
            return True
        try:  # the first sample of the first tar shard tells (a few header reads)
            first = tar_names(spec["root"], spec["tars"])[0]
            exts, first_key = set(), None
            with tarfile.open(os.path.join(spec["root"], first), "r:") as tar:
                for member in tar:
                    key, ext = sample_key(member.name)
                    if first_key is not None and key != first_key:
                        break
                    first_key = key
                    exts.add(ext)
            return "txt" in exts
        except (OSError, tarfile.TarError, DatasetError, IndexError):
            return None
    if kind == "embeddings":
        import h5py

        found = []
        for path in spec.get("paths", {}).values():
            try:
                with h5py.File(path, "r") as f:
                    found.append("class_names" in f)
            except OSError:
                return None
        return all(found) if found else None
    return None


def build_index(spec: Mapping[str, Any], seed: int = 0) -> DatasetIndex:
    kind = spec.get("type")
    if kind == "imagefolder":
        index = index_imagefolder(spec["root"], spec.get("class_map"))
    elif kind == "filelist":
        index = index_filelist(spec["list"], spec["root"], spec.get("class_names"))
    elif kind == "webdataset":
        index = index_webdataset(spec["root"], spec["tars"], spec.get("class_names"))
    else:
        raise DatasetError(
            f"cannot index dataset type {kind!r} (imagefolder, filelist or webdataset)"
        )
    index.params = {"type": kind, **{k: v for k, v in spec.items() if k != "type"}}
    return subsample(index, spec.get("limit"), spec.get("seed", seed))


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
    from .h5io import atomic_path

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
