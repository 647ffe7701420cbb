"""Image embedding files read in row blocks, so that a job's memory does not grow with N.

:func:`read_image_embeddings` holds a whole file (its embeddings, labels and paths), which is
what the clustering jobs need. A job that passes over the rows once (zero-shot labelling,
the data check) opens the file with :func:`open_image_rows` instead: its ``embeddings`` read
only the rows asked for, each block checked (finite, float32) as the whole-file reader checks
the file. At 13M × 1024 rows that is the difference between 53 GB and one block.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from clustermine.compute import rows_within
from clustermine.h5io import (
    EmbeddingFileError,
    open_file,
    require_dataset,
    read_strings,
    decode_text,
    check_embedding_layout,
    check_embeddings,
    check_row_counts,
    read_attrs,
)

# Rows of the blocks in which a file's string datasets (paths) are checked.
STRING_BLOCK_ROWS = 65_536


class EmbeddingRows:
    """The ``embeddings`` [N, D] of an open image file: ``rows[a:b]`` reads rows a to b only
    and returns them as a checked float32 array; ``len``, ``shape`` and ``ndim`` as an array's.
    Valid while the file is open (:func:`open_image_rows`)."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, dataset: h5py.Dataset, path: Path, attrs: dict[str, Any]):
        self._ds, self.path, self._attrs = dataset, path, attrs
        self.shape = tuple(int(s) for s in dataset.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def file(self) -> h5py.File:
        return self._ds.file

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("embedding rows are read as a contiguous slice rows[a:b]")
        start, stop, _ = key.indices(len(self))
        block = self._ds[start:stop] if stop > start else self._ds[0:0]
        if not len(block):
            return np.asarray(block, dtype=np.float32)
        try:
            return check_embeddings(block, self.path, self._attrs)
        except EmbeddingFileError as err:
            # The block's row numbers as rows of the file.
            raise EmbeddingFileError(f"{err} (in rows {start} to {stop - 1} of the file)") from None

    def take(self, rows) -> np.ndarray:
        """The checked rows ``rows`` (any order, repeats allowed), each read once."""
        unique, inverse = _unique_rows(rows, len(self))
        block = self._ds[unique] if len(unique) else self._ds[0:0]
        if not len(block):
            return np.zeros((0, self.shape[1]), np.float32)
        return check_embeddings(block, self.path, self._attrs)[inverse]

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) over the file, ``rows`` rows at a time."""
        for start in range(0, len(self), max(1, int(rows))):
            yield start, self[start : start + rows]

    def block_rows(self, budget_bytes: int) -> int:
        """Rows of a block whose float32 copy stays within ``budget_bytes``."""
        return rows_within(budget_bytes, 4 * max(1, self.shape[1]), len(self))


@dataclass
class ImageRows:
    """An open image file: ``embeddings`` read in blocks, ``labels`` [N] int64 held (8 bytes a
    row), the attributes and class names; the paths stay in the file (:meth:`paths_at`)."""

    embeddings: EmbeddingRows
    labels: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.embeddings)

    def paths_at(self, rows) -> list[str]:
        """The paths of rows ``rows`` (their row numbers where the file stores none)."""
        unique, inverse = _unique_rows(rows, len(self))
        f = self.embeddings.file
        if "paths" not in f:
            return [str(int(r)) for r in unique[inverse]]
        ds = f["paths"]
        got = ds[unique] if len(unique) else []
        text = [decode_text(s, ds, "dataset 'paths'") if isinstance(s, bytes) else str(s) for s in got]
        return [text[i] for i in inverse]


def _unique_rows(rows, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ``rows`` (as HDF5 reads a selection) and where each row is among them."""
    rows = np.asarray(rows, np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"rows must lie in [0, {n}), got {rows.min()} to {rows.max()}")
    return np.unique(rows, return_inverse=True)


@contextlib.contextmanager
def open_image_rows(path: str | os.PathLike) -> Iterator[ImageRows]:
    """Open an image embedding file for block reading; shapes are checked on opening, the
    values of every block as it is read."""
    path = Path(path)
    with open_file(path) as f:
        ds = require_dataset(f, "embeddings", path)
        attrs = read_attrs(f)
        # 2-D, floating point, as wide as the file records; values are checked per block.
        check_embedding_layout(ds.shape, ds.dtype, path, attrs)
        n = ds.shape[0]
        labels = (
            f["labels"][()].astype(np.int64, copy=False)
            if "labels" in f
            else np.full(n, -1, np.int64)
        )
        check_row_counts(path, ds.shape, len(labels), len(f["paths"]) if "paths" in f else n)
        if n:
            attrs["embedding_dim"] = int(ds.shape[1])
        class_names = read_strings(f["class_names"]) if "class_names" in f else None
        yield ImageRows(EmbeddingRows(ds, path, attrs), labels, attrs, class_names)


def check_image_file(path: str | os.PathLike, budget_bytes: int) -> ImageRows:
    """Every check of :func:`read_image_embeddings` (shapes, finite rows, paths as UTF-8),
    in blocks of ``budget_bytes``; returns the file's rows with the file closed (labels and
    attributes only: its ``embeddings`` can no longer be read)."""
    with open_image_rows(path) as images:
        for _ in images.embeddings.blocks(images.embeddings.block_rows(budget_bytes)):
            pass
        if "paths" in (f := images.embeddings.file):
            ds = f["paths"]
            for start in range(0, len(ds), STRING_BLOCK_ROWS):
                for s in ds[start : start + STRING_BLOCK_ROWS]:
                    if isinstance(s, bytes):
                        decode_text(s, ds, "dataset 'paths'")
    return images
