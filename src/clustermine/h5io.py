"""HDF5 embedding files: the contract between workflow stages (docs/file-formats.md).

Image files hold ``embeddings`` [N, D] float32 or, with a model's ``storage: float16``, float16
(attribute ``storage_dtype``; readers return float32), un-normalised as returned by the model,
``labels`` [N] int64 (-1 where unknown), ``paths`` [N] and optionally ``class_names`` [K].
Text files hold ``embeddings`` [M, D] float32 (prompt-ensembled, normalised) and ``names`` [M].
Every file carries the attributes that made it; readers compare the model attributes of
files that are used together and refuse mismatches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from clustermine.atomic import atomic_path
from clustermine.missing_files import missing_file

log = logging.getLogger(__name__)

STR = h5py.string_dtype("utf-8")
# Text files: 2 adds ``norms``, the raw norm of every name's prompt-mean feature.
TEXT_FORMAT_VERSION = 2
MODEL_KEYS = ("model_arch", "model_pretrained")


class EmbeddingFileError(ValueError):
    """An embedding file is missing a key, malformed, or incompatible with another file."""


def _attr_value(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Store attributes; dicts/lists become JSON strings, ``None`` becomes ``"none"``."""
    for key, value in attrs.items():
        obj.attrs[key] = _attr_value(value)


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = decode_text(value, obj, f"attribute '{key}'")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        out[key] = value
    return out


@dataclass
class ImageEmbeddings:
    embeddings: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.embeddings)

    def normalized(self) -> np.ndarray:
        return normalize(self.embeddings)


@dataclass
class TextEmbeddings:
    embeddings: np.ndarray
    names: list[str]
    pos: list[str] | None = None
    synsets: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    # The norm of every name's raw (prompt-mean, unnormalised) feature; None in files of
    # format 1, which predate it.
    norms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.embeddings)


def check_embedding_layout(
    shape: tuple[int, ...], dtype: np.dtype, source: str | os.PathLike,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """The shape part of :func:`check_embeddings` (no values read): 2-D, floating point, and
    as wide as the model's ``embedding_dim`` recorded beside it."""
    if len(shape) != 2:
        raise EmbeddingFileError(f"{source}: embeddings must be a 2-D [N, D] array, got {shape}")
    if not np.issubdtype(dtype, np.floating):
        raise EmbeddingFileError(
            f"{source}: embeddings must be floating point, got {dtype}; write them as float32"
        )
    dim = (attrs or {}).get("embedding_dim")
    if dim not in (None, "none") and shape[0] and int(dim) != shape[1]:
        raise EmbeddingFileError(
            f"{source}: embeddings have dimension {shape[1]} but the file records "
            f"embedding_dim={dim}; the file is inconsistent, re-create it"
        )


def check_embeddings(
    emb: np.ndarray, source: str | os.PathLike, attrs: Mapping[str, Any] | None = None
) -> np.ndarray:
    """The one check of an embedding array read from (or written to) ``source``: its layout
    (:func:`check_embedding_layout`) and every row finite. Returns the array as float32."""
    emb = np.asarray(emb)
    check_embedding_layout(emb.shape, emb.dtype, source, attrs)
    emb = emb.astype(np.float32, copy=False)
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise EmbeddingFileError(
            f"{source}: {len(rows)} of {len(emb)} embedding rows are not finite (NaN or inf), "
            f"first rows {rows[:5].tolist()}; the model or the file is broken. Re-encode the "
            "dataset (with precision: fp32 if mixed precision overflowed) or drop those rows."
        )
    return emb


def normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def decode_text(value: bytes, obj: h5py.HLObject, what: str) -> str:
    """Bytes of an HDF5 file as text: UTF-8, as this project writes it; anything else (text a
    tool stored as Latin-1, say) is an :class:`EmbeddingFileError` naming the file and where."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise EmbeddingFileError(
            f"{obj.file.filename}: {what} holds text that is not UTF-8 ({bytes(value[:60])!r}); "
            "clustermine stores names and paths as UTF-8: write them so"
        ) from None


def read_strings(ds: h5py.Dataset) -> list[str]:
    """A string dataset as text (each value checked as :func:`decode_text` checks it)."""
    where = f"dataset '{ds.name.lstrip('/')}'"
    return [decode_text(s, ds, where) if isinstance(s, bytes) else str(s) for s in ds[()]]


def require_dataset(f: h5py.File, key: str, path: Path) -> h5py.Dataset:
    """Dataset ``key`` of an embedding file, or an error naming the file and what it holds."""
    if key not in f:
        raise EmbeddingFileError(
            f"{path}: missing dataset '{key}'; this is not a clustermine embedding file "
            f"(see docs/file-formats.md). Found: {sorted(f.keys())}"
        )
    return f[key]


def open_file(path: str | os.PathLike) -> h5py.File:
    """An embedding file opened read-only; a missing or unreadable file is an error naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(missing_file(path, "embedding file"))
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise EmbeddingFileError(f"{path}: not a readable HDF5 file ({err})") from err


# Storage types of image embeddings (a model's ``storage``; attribute ``storage_dtype``):
# float16 halves the file; every reader computes in float32 (or float64) all the same.
STORAGE_DTYPES = ("float32", "float16")


def write_image_embeddings(path: str | os.PathLike, data: ImageEmbeddings) -> None:
    """Write image embeddings [N, D], stored as ``data.attrs["storage_dtype"]`` (float32 when
    absent; float16 halves the file, a value beyond float16's range is refused)."""
    storage = str(data.attrs.get("storage_dtype", "float32"))
    if storage not in STORAGE_DTYPES:
        raise EmbeddingFileError(
            f"{path}: storage_dtype must be one of {STORAGE_DTYPES}, got {storage!r}")
    emb = np.asarray(data.embeddings, dtype=np.float32)
    if len(emb):
        check_embeddings(emb, path)
    if storage == "float16":
        with np.errstate(over="ignore"):  # values beyond float16 become inf, refused just below
            emb = emb.astype(np.float16)
        if len(emb) and not np.isfinite(emb).all():
            rows = np.flatnonzero(~np.isfinite(emb).all(axis=1))
            raise EmbeddingFileError(
                f"{path}: {len(rows)} embedding rows hold values beyond float16's range "
                f"(first rows {rows[:5].tolist()}); store this model's embeddings as float32 "
                "(models.<model>.storage: float32)"
            )
    labels = np.asarray(data.labels, dtype=np.int64)
    if emb.ndim != 2 or len(labels) != len(emb) or len(data.paths) != len(emb):
        raise EmbeddingFileError(
            f"{path}: inconsistent shapes: embeddings {emb.shape}, labels {labels.shape}, "
            f"paths {len(data.paths)}"
        )
    attrs = dict(data.attrs)
    attrs.setdefault("kind", "image")
    attrs["storage_dtype"] = storage
    attrs["embedding_dim"] = int(emb.shape[1]) if emb.ndim == 2 else 0
    attrs["num_samples"] = int(len(emb))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("embeddings", data=emb, chunks=True if len(emb) else None)
        f.create_dataset("labels", data=labels)
        f.create_dataset("paths", data=np.asarray(data.paths, dtype=object), dtype=STR)
        if data.class_names is not None:
            f.create_dataset(
                "class_names", data=np.asarray(data.class_names, dtype=object), dtype=STR
            )
        write_attrs(f, attrs)


def read_image_embeddings(path: str | os.PathLike) -> ImageEmbeddings:
    path = Path(path)
    with open_file(path) as f:
        emb = require_dataset(f, "embeddings", path)[()]
        labels = (
            f["labels"][()].astype(np.int64)
            if "labels" in f
            else np.full(len(emb), -1, dtype=np.int64)
        )
        paths = read_strings(f["paths"]) if "paths" in f else [str(i) for i in range(len(emb))]
        class_names = read_strings(f["class_names"]) if "class_names" in f else None
        attrs = read_attrs(f)
    if len(emb) or emb.ndim != 2:
        emb = check_embeddings(emb, path, attrs)
        attrs["embedding_dim"] = int(emb.shape[1])
    else:
        emb = emb.astype(np.float32, copy=False)
    check_row_counts(path, emb.shape, len(labels), len(paths))
    return ImageEmbeddings(emb, labels, paths, class_names, attrs)


def check_row_counts(path: Path, shape: tuple[int, ...], n_labels: int, n_paths: int) -> None:
    """An image file's embeddings, labels and paths have one row each per image."""
    if len(shape) != 2 or n_labels != shape[0] or n_paths != shape[0]:
        raise EmbeddingFileError(
            f"{path}: inconsistent shapes: embeddings {shape}, labels ({n_labels},), "
            f"paths {n_paths}"
        )


def _check_local(local: np.ndarray, source: str | os.PathLike, n: int) -> None:
    """Local features: floating point [N, P, D] with every value finite (float16 storage
    overflows to inf above 65504), checked a block of images at a time."""
    if local.ndim != 3 or not np.issubdtype(local.dtype, np.floating):
        raise EmbeddingFileError(
            f"{source}: local features must be a floating-point [N, P, D] array, got "
            f"{local.dtype} {local.shape}"
        )
    if len(local) != n:
        raise EmbeddingFileError(f"{source}: {len(local)} local feature rows for {n} paths")
    step = max(1, 2**24 // max(1, local.shape[1] * local.shape[2]))
    for s in range(0, len(local), step):
        bad = ~np.isfinite(np.asarray(local[s : s + step])).all(axis=(1, 2))
        if bad.any():
            raise EmbeddingFileError(
                f"{source}: the local features of image rows "
                f"{(s + np.flatnonzero(bad)[:5]).tolist()} are not finite (NaN or inf, e.g. "
                "beyond float16's range); re-encode the dataset with precision: fp32"
            )


def write_local_features(path: str | os.PathLike, data: ImageEmbeddings) -> None:
    """Local patch features ([N, P, D] in ``data.embeddings``), stored as float16 under
    ``local`` beside the labels and paths of an image-embedding file."""
    local = np.asarray(data.embeddings)
    if local.ndim != 3:
        raise EmbeddingFileError(f"{path}: local features must be [N, P, D], got {local.shape}")
    with np.errstate(over="ignore"):  # values beyond float16 become inf, refused just below
        local = local.astype(np.float16)
    _check_local(local, path, len(data.paths))
    labels = np.asarray(data.labels, dtype=np.int64)
    attrs = {**data.attrs, "kind": "image", "features": "local", "storage_dtype": "float16"}
    attrs.update(embedding_dim=int(local.shape[2]), num_patches=int(local.shape[1]),
                 num_samples=int(len(local)))  # fmt: skip
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        chunks = (1, *local.shape[1:]) if len(local) else None
        f.create_dataset("local", data=local, chunks=chunks)
        f.create_dataset("labels", data=labels)
        f.create_dataset("paths", data=np.asarray(data.paths, dtype=object), dtype=STR)
        if data.class_names is not None:
            names = np.asarray(data.class_names, dtype=object)
            f.create_dataset("class_names", data=names, dtype=STR)
        write_attrs(f, attrs)


def read_local_features(path: str | os.PathLike) -> ImageEmbeddings:
    """The local patch features of a file of :func:`write_local_features`, kept float16."""
    path = Path(path)
    with open_file(path) as f:
        if "local" not in f:
            kind = "image embeddings" if "embeddings" in f else "not an embedding file"
            raise EmbeddingFileError(
                f"{path}: holds no local patch features ({kind}; found {sorted(f.keys())}); "
                "local features are written by the encoding with features: local"
            )
        local = f["local"][()]
        paths = read_strings(require_dataset(f, "paths", path))
        labels = f["labels"][()].astype(np.int64) if "labels" in f else np.full(len(paths), -1)
        class_names = read_strings(f["class_names"]) if "class_names" in f else None
        attrs = read_attrs(f)
    _check_local(local, path, len(paths))
    if len(labels) != len(paths):
        raise EmbeddingFileError(f"{path}: {len(labels)} labels for {len(paths)} paths")
    return ImageEmbeddings(local, labels, paths, class_names, attrs)


def read_features(path: str | os.PathLike) -> ImageEmbeddings:
    """An image-feature file of either kind: local patch features or image embeddings."""
    with open_file(path) as f:
        local = "local" in f
    return read_local_features(path) if local else read_image_embeddings(path)


def write_features(path: str | os.PathLike, data: ImageEmbeddings) -> None:
    """Write image embeddings [N, D] or local features [N, P, D], by their shape."""
    if np.ndim(data.embeddings) == 3:
        write_local_features(path, data)
    else:
        write_image_embeddings(path, data)


def write_text_embeddings(path: str | os.PathLike, data: TextEmbeddings) -> None:
    emb = check_embeddings(data.embeddings, path)
    if len(data.names) != len(emb):
        raise EmbeddingFileError(
            f"{path}: inconsistent shapes: embeddings {emb.shape}, names {len(data.names)}"
        )
    attrs = dict(data.attrs)
    attrs.setdefault("kind", "text")
    attrs["embedding_dim"] = int(emb.shape[1])
    attrs["num_names"] = int(len(emb))
    attrs["format_version"] = TEXT_FORMAT_VERSION
    norms = None if data.norms is None else np.asarray(data.norms, np.float32).reshape(-1)
    if norms is not None and (len(norms) != len(emb) or not np.isfinite(norms).all()):
        raise EmbeddingFileError(f"{path}: {len(norms)} raw norms for {len(emb)} names, or some not finite")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("embeddings", data=emb)
        f.create_dataset("names", data=np.asarray(data.names, dtype=object), dtype=STR)
        if norms is not None:
            f.create_dataset("norms", data=norms)
        if data.pos is not None:
            f.create_dataset("pos", data=np.asarray(data.pos, dtype=object), dtype=STR)
        if data.synsets is not None:
            f.create_dataset("synset", data=np.asarray(data.synsets, dtype=object), dtype=STR)
        write_attrs(f, attrs)


def read_text_embeddings(path: str | os.PathLike) -> TextEmbeddings:
    path = Path(path)
    with open_file(path) as f:
        emb = require_dataset(f, "embeddings", path)[()]
        names = read_strings(require_dataset(f, "names", path))
        pos = read_strings(f["pos"]) if "pos" in f else None
        synsets = read_strings(f["synset"]) if "synset" in f else None
        norms = f["norms"][()].astype(np.float32) if "norms" in f else None
        attrs = read_attrs(f)
    emb = check_embeddings(emb, path, attrs)
    attrs["embedding_dim"] = int(emb.shape[1])
    if len(names) != len(emb) or (norms is not None and len(norms) != len(emb)):
        raise EmbeddingFileError(
            f"{path}: {len(emb)} embeddings but {len(names)} names"
            + ("" if norms is None else f" and {len(norms)} raw norms")
        )
    return TextEmbeddings(emb, names, pos, synsets, attrs, norms)


def read_image_labels(path: str | os.PathLike) -> np.ndarray:
    """The ``labels`` of an image file (-1 where unknown) without reading its embeddings."""
    path = Path(path)
    with open_file(path) as f:
        if "labels" in f:
            return f["labels"][()].astype(np.int64)
        return np.full(len(require_dataset(f, "embeddings", path)), -1, dtype=np.int64)


def read_class_names(path: str | os.PathLike) -> list[str] | None:
    """The ``class_names`` of an image file without reading its embeddings (None: none)."""
    with open_file(path) as f:
        if "class_names" not in f:
            return None
        names = read_strings(f["class_names"])
    return names or None


def read_attributes(path: str | os.PathLike) -> dict[str, Any]:
    with open_file(path) as f:
        return read_attrs(f)


def check_same_model(files: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Refuse to combine files made by different models: compares the architecture, the
    pretrained tag and, where both files record it, the embedding dimension."""
    if len(files) < 2:
        return
    ref_name, ref = files[0]
    for name, attrs in files[1:]:
        for key in (*MODEL_KEYS, "embedding_dim"):
            mine, theirs = ref.get(key), attrs.get(key)
            unknown = (None, "none", 0)  # an empty file has no dimension
            if key == "embedding_dim" and (mine in unknown or theirs in unknown):
                continue
            if str(mine) != str(theirs):
                raise EmbeddingFileError(
                    f"model mismatch: {ref_name} has {key}={mine!r} but {name} has "
                    f"{key}={theirs!r}. Embeddings used together must come from the same "
                    "model; re-encode one of them with the other's model."
                )
