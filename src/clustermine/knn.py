"""Exact k nearest neighbours by cosine similarity, in memory-bounded blocks.

The full similarity matrix of 1.28M images would be 6.5 TB, so queries and keys are both
processed in blocks whose working set fits a memory budget, and a running top-k per query is
merged across key blocks. torch does the matrix products (on the GPU when one is present).
The result is cached in its own HDF5 file so that every clusterer needing the same k (TEMI
with any number of clusters) reuses it.
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

from clustermine.h5io import EmbeddingFileError, atomic_path, read_attrs, write_attrs
from clustermine.compute import as_unit_tensor, block_shape, default_budget, pick_device

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
) -> Neighbors:
    """The ``k`` most cosine-similar other rows of every row of ``embeddings`` [N, D].

    Rows need not be normalised. The working memory beyond the embeddings themselves is
    bounded by ``budget_bytes`` whatever N is; ``block`` = (query rows, key rows) overrides
    the block shape (tests use it to force many blocks). The default budget is 1 GiB on a
    GPU (bigger blocks keep it busy) and 256 MiB on the CPU.
    """
    n = len(embeddings)
    if np.ndim(embeddings) != 2:
        raise ValueError(f"kNN needs a [N, D] matrix, got shape {tuple(np.shape(embeddings))}")
    if not 1 <= k < n:
        raise ValueError(f"kNN: k must be in [1, N-1] = [1, {n - 1}], got k={k}")
    return blocked_topk(
        embeddings, k, exclude_self=True, device=device, budget_bytes=budget_bytes, block=block
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
) -> Neighbors:
    """For every row i of ``embeddings``, the ``k`` rows j with the largest
    ⟨x̂_i, x̂_j⟩ − ``key_bias``[j] (cosine kNN when there is no bias), the row itself left
    out when ``exclude_self``. ``sims`` holds those values, largest first. Blocks of queries ×
    keys stay within the memory budget; the full [N, N] matrix is never built.
    """
    n = len(embeddings)
    dev = pick_device(device)
    if budget_bytes is None:
        budget_bytes = default_budget(dev)
    keys = as_unit_tensor(embeddings, dev)
    bias = None if key_bias is None else torch.as_tensor(np.asarray(key_bias, np.float32), device=dev)
    # Each query row's candidates are its current top-k plus one key block.
    rows, cols = block or block_shape(n, n, budget_bytes)
    cols = max(cols, 1)
    out_idx = np.empty((n, k), dtype=np.int64)
    out_sim = np.empty((n, k), dtype=np.float32)
    start = time.perf_counter()
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
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
        out_idx[r0:r1] = best_idx.cpu().numpy()
        out_sim[r0:r1] = best_sim.cpu().numpy()
        if r0 == 0 or r1 == n or (r0 // rows) % 100 == 0:
            log.info("top-%d: %d/%d queries (%.1fs)", k, r1, n, time.perf_counter() - start)
    attrs = {
        "k": int(k),
        "metric": "cosine" if bias is None else "cosine minus key bias",
        "num_samples": int(n),
        "device": str(dev),
        "block_rows": int(rows),
        "block_cols": int(cols),
    }
    return Neighbors(out_idx, out_sim, attrs)


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
