"""Zero-shot classification of image embeddings over a (possibly huge) name set.

The similarity matrix of 1.28M images × 270k names would be 1.4 TB in float32, so images and
names are both processed in chunks whose similarity block fits a memory budget in bytes, and a
running top-k is merged across name chunks. torch does the matrix products (on the GPU when
one is present).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch

from clustermine.compute import DEFAULT_BUDGET_BYTES, as_unit_tensor, block_shape, pick_device
from clustermine.atomic import atomic_path
from clustermine.h5io import EmbeddingFileError, read_attrs, write_attrs
from clustermine.image_rows import EmbeddingRows

log = logging.getLogger(__name__)
# Seconds between progress lines of a long zero-shot pass.
PROGRESS_SECONDS = 60.0


@dataclass
class ZeroShotResult:
    """Top-k names per image: ``indices`` int64 [N, k] into the name set, ``sims`` cosines."""

    indices: np.ndarray
    sims: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def top1(self) -> np.ndarray:
        return self.indices[:, 0]


def zero_shot_topk(
    image_emb: np.ndarray | EmbeddingRows,
    text_emb: np.ndarray,
    k: int = 1,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    device: str | torch.device | None = None,
) -> ZeroShotResult:
    """Top-``k`` names (by cosine) for every image; inputs need not be normalised.
    ``image_emb`` may be an image file's :class:`EmbeddingRows`: its rows are then read one
    block at a time, so memory holds the names, one block and the [N, k] result.

    Ties are broken towards the lower name index, so the result does not depend on the
    chunking.
    """
    if not isinstance(image_emb, EmbeddingRows):
        image_emb = np.asarray(image_emb)
    text_emb = np.asarray(text_emb)
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"zero-shot needs [N, D] images and [M, D] names; got {image_emb.shape} and "
            f"{text_emb.shape}"
        )
    n, m = len(image_emb), len(text_emb)
    if m == 0:
        raise ValueError("zero-shot over an empty name set")
    k = int(min(k, m))
    dev = pick_device(device)
    rows, cols = block_shape(n, m, budget_bytes)
    text = as_unit_tensor(text_emb, dev)
    out_idx = np.empty((n, k), dtype=np.int64)
    out_sim = np.empty((n, k), dtype=np.float32)
    start = last = time.perf_counter()
    for r0 in range(0, n, rows):
        img = as_unit_tensor(image_emb[r0 : r0 + rows], dev)
        best_sim = torch.full((len(img), 0), -np.inf, device=dev)
        best_idx = torch.zeros((len(img), 0), dtype=torch.int64, device=dev)
        for c0 in range(0, m, cols):
            sims = img @ text[c0 : c0 + cols].T
            kk = min(k, sims.shape[1])
            s, i = _stable_topk(sims, kk)
            cand_sim = torch.cat([best_sim, s], dim=1)
            cand_idx = torch.cat([best_idx, i + c0], dim=1)
            # Candidates are already ordered by (sim desc, index asc) within each part and
            # earlier parts hold lower indices, so a stable sort keeps the tie rule.
            order = torch.sort(cand_sim, dim=1, descending=True, stable=True).indices[:, :k]
            best_sim = torch.gather(cand_sim, 1, order)
            best_idx = torch.gather(cand_idx, 1, order)
        out_idx[r0 : r0 + len(img)] = best_idx.cpu().numpy()
        out_sim[r0 : r0 + len(img)] = best_sim.cpu().numpy()
        if (now := time.perf_counter()) - last >= PROGRESS_SECONDS and r0 + len(img) < n:
            done = r0 + len(img)
            log.info("zero-shot: %d of %d images (%.0f images/s, about %.0f s left)", done, n,
                     done / (now - start), (n - done) * (now - start) / done)  # fmt: skip
            last = now
    return ZeroShotResult(out_idx, out_sim, {"k": k, "num_names": m, "device": str(dev)})


def _stable_topk(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k with ties going to the lower column index (torch.topk leaves ties unspecified)."""
    if k == 1:
        # argmax returns the first maximal index.
        i = sims.argmax(dim=1, keepdim=True)
        return torch.gather(sims, 1, i), i
    s, i = torch.topk(sims, k, dim=1)
    # Re-rank candidates plus every column tied with the k-th value, in index order.
    kth = s[:, -1:]
    if bool((sims == kth).sum(dim=1).gt((s == kth).sum(dim=1)).any()):
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :k]
        return torch.gather(sims, 1, order), order
    order = torch.argsort(i, dim=1)
    s, i = torch.gather(s, 1, order), torch.gather(i, 1, order)
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    return torch.gather(s, 1, order), torch.gather(i, 1, order)


def zero_shot_top1(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Index of the most similar name for every image."""
    return zero_shot_topk(image_emb, text_emb, 1, budget_bytes, device).top1


def write_zero_shot(path: str | os.PathLike, result: ZeroShotResult, attrs: dict) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        # copy=False: the [N, k] result is written as it is, not copied first.
        f.create_dataset("indices", data=result.indices.astype(np.int64, copy=False))
        f.create_dataset("sims", data=result.sims.astype(np.float32, copy=False))
        write_attrs(f, {**result.attrs, **attrs, "kind": "zero_shot"})


def read_zero_shot(path: str | os.PathLike, top1_only: bool = False) -> ZeroShotResult:
    """A zero-shot file; ``top1_only`` reads the first column only ([N, 1]: what the votes
    need, 12 bytes a row instead of 12·k)."""
    with h5py.File(path, "r") as f:
        if "indices" not in f or "sims" not in f:
            raise EmbeddingFileError(
                f"{path}: not a zero-shot file (needs datasets 'indices' and 'sims', "
                f"found {sorted(f.keys())})"
            )
        if f["indices"].ndim != 2 or f["indices"].shape != f["sims"].shape:
            raise EmbeddingFileError(
                f"{path}: 'indices' {f['indices'].shape} and 'sims' {f['sims'].shape} must be "
                "[N, k] arrays of one shape; delete the file so that it is recomputed"
            )
        cols = slice(0, 1) if top1_only else slice(None)
        return ZeroShotResult(f["indices"][:, cols], f["sims"][:, cols], read_attrs(f))
