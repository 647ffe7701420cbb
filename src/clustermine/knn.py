"""Exact k nearest neighbours by cosine similarity, in memory-bounded blocks.

The full similarity matrix of 1.28M images would be 6.5 TB, so the search never builds it.
Two backends compute the same exact top-k (``backend``; docs/clustering.md, "Backends"):

- ``faiss`` (the default on the CPU when faiss is installed): brute-force inner-product search
  of the unit rows (``faiss.knn``), which blocks the products and keeps a heap per query.
- ``torch`` (on a GPU, and the fallback without faiss): queries × keys in blocks whose working
  set fits a memory budget, a running top-k per query merged across key blocks.

An approximate search (a faiss IVF index, :func:`approximate_knn`) is an option of a
clusterer (``knn_index: ivf``), reported with its recall measured against the exact search;
exact is the default. The result is cached in its own HDF5 file, named by k and search
(:mod:`clustermine.knn_search`), so that every clusterer needing the same graph (TEMI with
any number of clusters) reuses it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import h5py
import numpy as np
import torch

from clustermine.atomic import atomic_path
from clustermine.h5io import EmbeddingFileError, read_attrs, write_attrs
from clustermine.image_rows import EmbeddingRows
from clustermine.knn_ivf import ivf_knn
from clustermine.knn_search import IVF_SEED, RECALL_QUERIES, KnnSearch
from clustermine.compute import (
    as_unit_tensor,
    block_shape,
    default_budget,
    faiss_module,
    pick_backend,
    pick_device,
    rows_within,
)

log = logging.getLogger(__name__)

# Model/dataset attributes of the image file that travel into derived files.
INHERITED_ATTRS = (
    "model_arch",
    "model_pretrained",
    "model",
    "dataset",
    "logit_scale",
    "random_weights",
    "embedding_dim",
    "num_samples",
)


@dataclass
class Neighbors:
    """``indices`` int64 [N, k] (most similar first, never the query itself), ``sims`` [N, k]."""

    indices: np.ndarray
    sims: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return len(self.indices)


def cosine_knn(
    embeddings: np.ndarray | torch.Tensor,
    k: int,
    *,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    block: tuple[int, int] | None = None,
    backend: str | None = "auto",
    query_rows: tuple[int, int] | None = None,
    copy: bool = True,
) -> Neighbors:
    """The ``k`` most cosine-similar other rows of every row of ``embeddings`` [N, D].

    Rows need not be normalised. The working memory beyond the embeddings themselves is
    bounded by ``budget_bytes`` whatever N is; ``block`` = (query rows, key rows) overrides
    the block shape of the torch code (tests use it to force many blocks; with ``backend``
    ``auto`` it chooses torch). The default budget is 1 GiB on a GPU (bigger blocks keep it
    busy) and 256 MiB on the CPU. ``backend``: ``auto`` (faiss on the CPU when installed,
    else torch), ``faiss`` or ``torch``; all return the same exact neighbours.
    ``query_rows`` = (first, stop) searches for those rows only (benchmarks time a part).
    ``copy=False`` lets the search normalise a float32 array's rows in place (``embeddings``
    is overwritten; saves a copy of the data: 5.2 GB for ImageNet train at D = 1024).
    """
    n = len(embeddings)
    if np.ndim(embeddings) != 2:
        raise ValueError(f"kNN needs a [N, D] matrix, got shape {tuple(np.shape(embeddings))}")
    if not 1 <= k < n:
        raise ValueError(f"kNN: k must be in [1, N-1] = [1, {n - 1}], got k={k}")
    return blocked_topk(
        embeddings,
        k,
        exclude_self=True,
        device=device,
        budget_bytes=budget_bytes,
        block=block,
        backend=backend,
        query_rows=query_rows,
        copy=copy,
    )


def blocked_topk(
    embeddings: np.ndarray | torch.Tensor,
    k: int,
    *,
    key_bias: np.ndarray | None = None,
    exclude_self: bool = True,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    block: tuple[int, int] | None = None,
    backend: str | None = "auto",
    query_rows: tuple[int, int] | None = None,
    copy: bool = True,
) -> Neighbors:
    """For every row i of ``embeddings`` (or of rows [first, stop) = ``query_rows``), the
    ``k`` rows j with the largest ⟨x̂_i, x̂_j⟩ − ``key_bias``[j] (cosine kNN when there is no
    bias), the row itself left out when ``exclude_self``. ``sims`` holds those values, largest first. The full [N, N]
    matrix is never built: torch works in blocks of queries × keys within the memory budget,
    faiss in its own fixed blocks (4096 × 1024). ``copy``: as in :func:`cosine_knn`.
    """
    n = len(embeddings)
    dev = pick_device(device)
    if budget_bytes is None:
        budget_bytes = default_budget(dev)
    if block is not None and backend in (None, "auto"):
        chosen = "torch"  # an explicit block shape is the torch code's
    else:
        chosen = pick_backend(backend, dev)
    first, stop = query_rows or (0, n)
    start = time.perf_counter()
    if chosen == "faiss":
        keys = as_unit_tensor(embeddings, torch.device("cpu"), inplace=not copy).numpy()
        out_idx, out_sim, shape = _faiss_topk(keys, k, key_bias, exclude_self, first, stop)
    else:
        keys = as_unit_tensor(embeddings, dev, inplace=not copy)
        out_idx, out_sim, shape = _torch_topk(
            keys, k, key_bias, exclude_self, dev, budget_bytes, block, first, stop
        )
    log.info("top-%d of %d rows by %s: %.1fs", k, stop - first, chosen,
             time.perf_counter() - start)  # fmt: skip
    attrs = {
        "k": int(k),
        "metric": "cosine" if key_bias is None else "cosine minus key bias",
        "num_samples": int(n),
        "device": str(dev),
        "backend": chosen,
        "index": "exact",
        **shape,
        **({"query_rows": [int(first), int(stop)]} if query_rows else {}),
    }
    return Neighbors(out_idx, out_sim, attrs)


def _progress(k: int, done: int, total: int, step: int, start: float) -> None:
    if done <= step or done == total or (done // step) % 100 == 0:
        log.info("top-%d: %d/%d queries (%.1fs)", k, done, total, time.perf_counter() - start)


def _torch_topk(keys, k, key_bias, exclude_self, dev, budget_bytes, block, first, stop):
    """Top-k by torch of the unit rows ``keys`` (a tensor on ``dev``), in blocks."""
    n = len(keys)
    bias = None if key_bias is None else torch.as_tensor(np.asarray(key_bias, np.float32), device=dev)
    # Each query row's candidates are its current top-k plus one key block.
    rows, cols = block or block_shape(n, n, budget_bytes)
    cols = max(cols, 1)
    out_idx = np.empty((stop - first, k), dtype=np.int64)
    out_sim = np.empty((stop - first, k), dtype=np.float32)
    start = time.perf_counter()
    for r0 in range(first, stop, rows):
        r1 = min(stop, r0 + rows)
        query = keys[r0:r1]
        best_sim = torch.empty((r1 - r0, 0), device=dev)
        best_idx = torch.empty((r1 - r0, 0), dtype=torch.int64, device=dev)
        row_ids = torch.arange(r0, r1, device=dev)
        for c0 in range(0, n, cols):
            c1 = min(n, c0 + cols)
            sims = query @ keys[c0:c1].T
            if bias is not None:
                sims -= bias[c0:c1]
            if exclude_self and c0 < r1 and r0 < c1:  # this block holds some queries' own rows
                own = row_ids - c0
                hit = (own >= 0) & (own < c1 - c0)
                sims[hit.nonzero().squeeze(1), own[hit]] = -torch.inf
            # Top-k of the block first, then merge with the running top-k: the block itself
            # is the only [rows, cols] allocation.
            s, i = torch.topk(sims, min(k, c1 - c0), dim=1)
            del sims
            cand_sim = torch.cat([best_sim, s], dim=1)
            cand_idx = torch.cat([best_idx, i + c0], dim=1)
            best_sim, pos = torch.topk(cand_sim, min(k, cand_sim.shape[1]), dim=1)
            best_idx = torch.gather(cand_idx, 1, pos)
        out_idx[r0 - first : r1 - first] = best_idx.cpu().numpy()
        out_sim[r0 - first : r1 - first] = best_sim.cpu().numpy()
        _progress(k, r1 - first, stop - first, rows, start)
    return out_idx, out_sim, {"block_rows": int(rows), "block_cols": int(cols)}


# Queries per faiss call: only how often progress is logged (faiss blocks the products itself).
FAISS_QUERY_ROWS = 16384


def _faiss_topk(keys, k, key_bias, exclude_self, first, stop):
    """faiss inner-product search of the unit rows. A key bias b_j becomes one more dimension:
    [x̂_i, 1] · [x̂_j, −b_j] = ⟨x̂_i, x̂_j⟩ − b_j. With ``exclude_self`` one neighbour more is
    searched and the row itself dropped (or, when ties with it pushed it out, the last)."""
    faiss = faiss_module()
    n = len(keys)
    queries = keys
    if key_bias is not None:
        bias = np.asarray(key_bias, np.float32).reshape(n, 1)
        queries = np.hstack([keys, np.ones((n, 1), np.float32)])
        keys = np.hstack([keys, -bias])
    kk = min(n, k + 1) if exclude_self else k
    out_idx = np.empty((stop - first, k), dtype=np.int64)
    out_sim = np.empty((stop - first, k), dtype=np.float32)
    start = time.perf_counter()
    for r0 in range(first, stop, FAISS_QUERY_ROWS):
        r1 = min(stop, r0 + FAISS_QUERY_ROWS)
        sims, idx = faiss.knn(queries[r0:r1], keys, kk, metric=faiss.METRIC_INNER_PRODUCT)
        if exclude_self:
            drop = idx == np.arange(r0, r1)[:, None]
            drop[~drop.any(axis=1), -1] = True  # self not found: drop the last instead
            keep = ~drop
            idx, sims = idx[keep].reshape(-1, k), sims[keep].reshape(-1, k)
        out_idx[r0 - first : r1 - first], out_sim[r0 - first : r1 - first] = idx, sims
        _progress(k, r1 - first, stop - first, FAISS_QUERY_ROWS, start)
    return out_idx, out_sim, {"query_block": FAISS_QUERY_ROWS}


def search_knn(
    embeddings: np.ndarray | EmbeddingRows,
    search: KnnSearch,
    *,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    copy: bool = True,
) -> Neighbors:
    """The kNN graph ``search`` describes: :func:`cosine_knn` (exact) or
    :func:`approximate_knn` (IVF, its recall measured); ``attrs["graph"]`` is its name.
    ``embeddings`` may be an image file's rows: an IVF search reads them in blocks, an exact
    one reads them whole."""
    k = search.k
    if search.index != "exact":
        nn = approximate_knn(embeddings, k, nlist=search.nlist, nprobe=search.nprobe,
                             device=device)  # fmt: skip
    elif isinstance(embeddings, EmbeddingRows):  # the exact search holds the rows whole
        nn = cosine_knn(embeddings[:], k, device=device, budget_bytes=budget_bytes, copy=False)
    else:
        nn = cosine_knn(embeddings, k, device=device, budget_bytes=budget_bytes, copy=copy)
    nn.attrs["graph"] = search.name
    return nn


def kth_largest_cosine(
    queries: np.ndarray | torch.Tensor, keys: torch.Tensor, k: int, budget_bytes: int
) -> np.ndarray:
    """For every row of ``queries`` [N, D] (normalised here), its ``k``-th largest cosine to
    the unit rows ``keys`` [M, D] (a float32 tensor on the compute device), as float64; needs
    1 <= k <= M. Queries go in blocks whose [rows, M] similarities (with ``kthvalue``'s
    working copies) fit ``budget_bytes``."""
    m = len(keys)
    if not 1 <= k <= m:
        raise ValueError(f"the k-th largest of {m} cosines needs 1 <= k <= {m}, got k={k}")
    rows = rows_within(budget_bytes, 4 * 3 * m, len(queries))
    out = np.empty(len(queries), dtype=np.float64)
    for r0 in range(0, len(queries), rows):
        q = as_unit_tensor(queries[r0 : r0 + rows], keys.device)
        sims = q @ keys.T
        out[r0 : r0 + len(q)] = torch.kthvalue(sims, m - k + 1, dim=1).values.cpu().numpy()
    return out


def approximate_knn(
    embeddings,
    k: int,
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    seed: int = IVF_SEED,
    recall_queries: int = RECALL_QUERIES,
    device: str | torch.device | None = "cpu",
) -> Neighbors:
    """Approximate cosine kNN with a faiss IVF index (``knn_index: ivf``; exact is the default).

    The unit rows are split into ``nlist`` cells (default 4·√N, at most N/39 so that every
    cell has the 39 training rows faiss asks for) by k-means; each query searches its
    ``nprobe`` nearest cells. The recall@k against the exact search on ``recall_queries``
    seeded random queries is measured and recorded (``attrs["recall"]``), so the quality of
    every approximate graph is known. On a GPU the index runs there when faiss has GPU
    support (a faiss-gpu build), else on the CPU (logged). ``embeddings``: an array, or an
    image file's rows read in blocks (the job then holds only the index's copy of them;
    :mod:`clustermine.knn_ivf`)."""
    indices, sims, attrs = ivf_knn(embeddings, k, nlist=nlist, nprobe=nprobe, seed=seed,
                                   recall_queries=recall_queries, device=device)  # fmt: skip
    return Neighbors(indices, sims, attrs)


def inherited_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The model/dataset attributes of an image file that derived files copy."""
    return {key: attrs[key] for key in INHERITED_ATTRS if key in attrs}


def write_knn(path: str | os.PathLike, nn: Neighbors, attrs: Mapping[str, Any]) -> None:
    """Atomically write ``indices``/``sims`` with ``nn.attrs`` plus ``attrs``."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("indices", data=np.asarray(nn.indices, dtype=np.int64))
        f.create_dataset("sims", data=np.asarray(nn.sims, dtype=np.float32))
        write_attrs(f, {**attrs, **nn.attrs, "kind": "knn"})


def read_knn(path: str | os.PathLike) -> Neighbors:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: kNN file does not exist")
    with h5py.File(path, "r") as f:
        if "indices" not in f or "sims" not in f:
            raise EmbeddingFileError(
                f"{path}: not a kNN file (needs datasets 'indices' and 'sims', found "
                f"{sorted(f.keys())}); delete it and rerun the knn rule"
            )
        nn = Neighbors(f["indices"][()], f["sims"][()], read_attrs(f))
    if nn.indices.ndim != 2 or nn.indices.shape != nn.sims.shape:
        raise EmbeddingFileError(
            f"{path}: indices {nn.indices.shape} and sims {nn.sims.shape} must be equal [N, k]"
        )
    return nn
