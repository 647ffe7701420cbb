"""Approximate cosine kNN with a faiss IVF index, holding the rows once (the index's copy).

The rows come from an array or, in the workflow, from an image file read in row blocks
(:class:`clustermine.image_rows.EmbeddingRows`): the cells are trained on at most
``256·nlist`` rows (faiss's own cap, a seeded sample beyond it), the rows are normalised and
added block by block, and the queries are read back in blocks. So the job holds the index
(N·D·4 bytes, its cells' lists allocated once at their final size) and the graph (N·k·12),
never a second copy of the rows (docs/performance.md, "Memory of every job").

The recall@k is measured against the exact search on a seeded sample of queries, also read
in blocks: the exact neighbours of a few rows are merged over blocks of all rows.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from clustermine.compute import as_unit_tensor, faiss_module, pick_device, rows_within

log = logging.getLogger(__name__)

# Rows per block added to the index or searched (only how often a block is read: faiss
# blocks its own work).
IVF_BLOCK_ROWS = 16384
# faiss trains the cells on at most this many rows a cell (faiss.ClusteringParameters'
# max_points_per_centroid); beyond it the rows are a seeded sample, drawn here.
TRAIN_ROWS_PER_CELL = 256
# Bytes of the key blocks of the exact search of the sample queries.
EXACT_BLOCK_BYTES = 256 * 2**20


def default_nlist(n: int) -> int:
    """4·√N cells, at most N/39 so that every cell has the 39 training rows faiss asks for."""
    return int(max(1, min(n // 39, round(4 * np.sqrt(n)))))


def ivf_knn(
    rows,
    k: int,
    *,
    nlist: int | None,
    nprobe: int,
    seed: int,
    recall_queries: int,
    device: str | torch.device | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Indices [N, k], cosines [N, k] and the attributes of the IVF graph of ``rows`` (an
    array or a block reader: anything with ``len``, ``shape`` and row slices); see
    :func:`clustermine.knn.approximate_knn`."""
    faiss = faiss_module()
    if faiss is None:
        raise ValueError("approximate_knn needs the faiss package (pip install faiss-cpu)")
    n, dim = len(rows), int(rows.shape[1])
    if not 1 <= k < n:
        raise ValueError(f"kNN: k must be in [1, N-1] = [1, {n - 1}], got k={k}")
    nlist = int(nlist or default_nlist(n))
    if nlist > n:
        raise ValueError(f"kNN: an IVF index of nlist={nlist} cells needs at least as many "
                         f"rows, got N={n}; lower knn_nlist")  # fmt: skip
    start = time.perf_counter()
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    where = "cpu"
    if pick_device(device).type == "cuda":
        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            where = "cuda"
        else:
            log.info("IVF kNN: this faiss has no GPU support; the index runs on the CPU")
    train = _training_rows(rows, nlist * TRAIN_ROWS_PER_CELL, seed)
    index.train(train)
    train_rows = len(train)
    del train
    log.info("IVF kNN: %d cells trained on %d rows (%.1fs)", nlist, train_rows,
             time.perf_counter() - start)  # fmt: skip
    if where == "cpu":
        _add_presized(faiss, index, rows, start)
    else:
        for r0, block in _unit_blocks(rows):
            index.add(block)
            _progress("added", r0 + len(block), n, start)
    index.nprobe = min(nprobe, nlist)
    out_idx = np.empty((n, k), dtype=np.int64)
    out_sim = np.empty((n, k), dtype=np.float32)
    for r0, block in _unit_blocks(rows):
        r1 = r0 + len(block)
        sims, idx = index.search(block, k + 1)
        drop = idx == np.arange(r0, r1)[:, None]
        drop[~drop.any(axis=1), -1] = True
        out_idx[r0:r1] = idx[~drop].reshape(-1, k)
        out_sim[r0:r1] = sims[~drop].reshape(-1, k)
        _progress("searched", r1, n, start)
    del index
    # A query whose probed cells hold fewer than k other rows gets -1 (no row) from faiss;
    # index -1 would silently be the last row to TEMI, so such rows are searched exactly.
    short = np.flatnonzero((out_idx < 0).any(axis=1))
    if len(short):
        out_idx[short], out_sim[short] = exact_rows(rows, short, k)
        log.warning("IVF kNN: %d of %d rows found fewer than k=%d neighbours in their %d probed "
                    "cells and were searched exactly; raise knn_nprobe or lower knn_nlist",
                    len(short), n, k, min(nprobe, nlist))  # fmt: skip
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(recall_queries, n), replace=False))
    recall = neighbour_recall(out_idx[sample], exact_rows(rows, sample, k)[0])
    log.info("IVF kNN (nlist %d, nprobe %d): %.1fs, recall@%d %.4f on %d queries",
             nlist, min(nprobe, nlist), seconds, k, recall, len(sample))  # fmt: skip
    attrs = {
        "k": int(k),
        "metric": "cosine",
        "num_samples": int(n),
        "device": where,
        "backend": "faiss",
        "index": "ivf",
        "nlist": nlist,
        "nprobe": int(min(nprobe, nlist)),
        "seed": int(seed),
        "train_rows": int(train_rows),
        "recall": recall,
        "recall_queries": int(len(sample)),
        "exact_fallback_rows": int(len(short)),
    }
    return out_idx, out_sim, attrs


def _progress(what: str, done: int, total: int, start: float) -> None:
    """A log line about every twentieth of the rows (where a block ends), and at the end."""
    step = max(IVF_BLOCK_ROWS, total // 20)
    if done == total or done // step != (done - IVF_BLOCK_ROWS) // step:
        log.info("IVF kNN: %s %d/%d rows (%.0fs)", what, done, total, time.perf_counter() - start)


def _add_presized(faiss, index, rows, start: float) -> None:
    """Add the unit rows to the CPU ``index``, each cell's list allocated once at its final
    size: grown a block at a time, faiss's lists double their capacity as they fill and held
    1.29 times the rows at 1M × 512 (``benchmarks/bench_backends.py ivf-lists``). The rows'
    cells are found in a first pass (8 bytes a row) and given to ``add_core``, so no row is
    assigned twice, though the rows are read and normalised twice (memory over I/O: the
    second pass took 0.93 of the time of faiss's own add there); the lists are the same as
    :meth:`add` makes, entry for entry."""
    n = len(rows)
    cells = np.empty(n, dtype=np.int64)
    for r0, block in _unit_blocks(rows):
        cells[r0 : r0 + len(block)] = index.quantizer.search(block, 1)[1][:, 0]
        _progress("assigned", r0 + len(block), n, start)
    lists = faiss.downcast_InvertedLists(index.invlists)
    for cell, count in enumerate(np.bincount(cells, minlength=index.nlist).tolist()):
        lists.resize(cell, count)  # allocates the list's entries once,
        lists.resize(cell, 0)  # then empties it: the allocation stays
    for r0, block in _unit_blocks(rows):
        part = np.ascontiguousarray(cells[r0 : r0 + len(block)])
        index.add_core(len(block), faiss.swig_ptr(block), None, faiss.swig_ptr(part))
        _progress("added", r0 + len(block), n, start)


def _unit_blocks(rows, block_rows: int | None = None):
    """(first row, unit rows as a float32 array) over ``rows``, a block at a time."""
    block_rows = block_rows or IVF_BLOCK_ROWS
    for r0 in range(0, len(rows), block_rows):
        yield r0, as_unit_tensor(rows[r0 : r0 + block_rows], torch.device("cpu")).numpy()


def _training_rows(rows, most: int, seed: int) -> np.ndarray:
    """The unit rows the cells are trained on: all of them up to ``most``, else a seeded
    sample of ``most`` (in file order), gathered block by block into one array."""
    n = len(rows)
    keep = None
    if n > most:
        keep = np.zeros(n, dtype=bool)
        keep[np.random.default_rng(seed).choice(n, size=most, replace=False)] = True
    out = np.empty((min(n, most), int(rows.shape[1])), dtype=np.float32)
    filled = 0
    for r0, block in _unit_blocks(rows):
        chosen = block if keep is None else block[keep[r0 : r0 + len(block)]]
        out[filled : filled + len(chosen)] = chosen
        filled += len(chosen)
    return out


def exact_rows(rows, which: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours (self left out) of the rows ``which`` among all ``rows``, and their
    cosines: the top k + 1 of each block of keys, merged block by block."""
    faiss = faiss_module()
    which = np.asarray(which, dtype=np.int64)
    if not len(which):
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    picked = rows[which] if isinstance(rows, np.ndarray) else rows.take(which)
    queries = as_unit_tensor(picked, torch.device("cpu")).numpy()
    kk = k + 1
    best_sim = np.full((len(which), kk), -np.inf, dtype=np.float32)
    best_idx = np.full((len(which), kk), -1, dtype=np.int64)
    block_rows = rows_within(EXACT_BLOCK_BYTES, 4 * int(rows.shape[1]), len(rows))
    for r0, keys in _unit_blocks(rows, block_rows):
        sims, idx = faiss.knn(queries, keys, min(kk, len(keys)),
                              metric=faiss.METRIC_INNER_PRODUCT)  # fmt: skip
        sims = np.concatenate([best_sim, sims], axis=1)
        idx = np.concatenate([best_idx, idx + r0], axis=1)
        # Most similar first; among equal cosines the lower row first, as one search would.
        order = np.lexsort((idx, -sims))[:, :kk]
        best_sim = np.take_along_axis(sims, order, axis=1)
        best_idx = np.take_along_axis(idx, order, axis=1)
    drop = best_idx == which[:, None]
    drop[~drop.any(axis=1), -1] = True
    return best_idx[~drop].reshape(-1, k), best_sim[~drop].reshape(-1, k)


def neighbour_recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact neighbours [N, k] that ``found`` [N, k] holds (row by row)."""
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(found, exact))
    return float(hits / exact.size)
