"""Reductions over image × name similarities without building the full matrix.

50k images × 270k names is 54 GB in float32; blocks of images × names sized to a memory budget
are reduced one at a time. Log-sum-exp partial results are merged in float64 with
``logaddexp``; each segment of names (e.g. positives, negatives, negative groups) is reduced
on its own so that one segment's much larger values never underflow another's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from clustermine.compute import as_unit_tensor, block_shape

REDUCTIONS = ("lse", "max", "argmax", "max_scaled")


def segment_reduce(
    images: np.ndarray,
    segments: Sequence[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    scale: float = 1.0,
    budget_bytes: int = 256 * 2**20,
    reductions: Sequence[str] = ("lse",),
) -> dict[str, np.ndarray]:
    """Per image and segment of names: logsumexp of ``scale``·cosine (``"lse"``), the max
    cosine (``"max"``), its position in the segment (``"argmax"``, int64, ties to the first)
    and/or the max of ``scale``·cosine rounded exactly as the terms of ``"lse"`` are
    (``"max_scaled"``, so that ``max_scaled − lse`` is a log-probability, never above 0, at any
    scale). Returns arrays [N, len(segments)].

    A segment is a tensor of unit text rows on the compute device, or ``(rows, index)`` to
    use ``rows[index]`` without materialising it (e.g. a permuted group of negatives).
    ``images`` are normalised here. Empty segments reduce to -inf.
    """
    bad = set(reductions) - set(REDUCTIONS)
    if bad:
        raise ValueError(f"unknown reductions {sorted(bad)}; known: {REDUCTIONS}")
    parts = [s if isinstance(s, tuple) else (s, None) for s in segments]
    sizes = [len(rows) if idx is None else len(idx) for rows, idx in parts]
    dev = parts[0][0].device if parts else torch.device("cpu")
    n = len(images)
    rows_per_block, cols = block_shape(n, max(sizes + [1]), budget_bytes)
    out = {r: np.full((n, len(parts)), -np.inf) for r in reductions if r != "argmax"}
    if "argmax" in reductions:
        out["argmax"] = np.zeros((n, len(parts)), dtype=np.int64)
    track_max = "max" in reductions or "argmax" in reductions
    for r0 in range(0, n, rows_per_block):
        img = as_unit_tensor(images[r0 : r0 + rows_per_block], dev)
        for j, ((rows, idx), size) in enumerate(zip(parts, sizes)):
            lse = torch.full((len(img),), -np.inf, dtype=torch.float64, device=dev)
            mx = torch.full((len(img),), -np.inf, dtype=torch.float64, device=dev)
            arg = torch.zeros((len(img),), dtype=torch.int64, device=dev)
            top = torch.full((len(img),), -np.inf, dtype=torch.float64, device=dev)
            for c0 in range(0, size, cols):
                block = rows[c0 : c0 + cols] if idx is None else rows[idx[c0 : c0 + cols]]
                sims = img @ block.T
                if track_max:
                    value, where = sims.max(dim=1)
                    better = value.double() > mx  # strictly: ties stay with the earlier block
                    arg = torch.where(better, where + c0, arg)
                    mx = torch.where(better, value.double(), mx)
                if "lse" in out or "max_scaled" in out:
                    sims.mul_(scale)
                if "lse" in out:
                    lse = torch.logaddexp(lse, torch.logsumexp(sims, dim=1).double())
                if "max_scaled" in out:
                    top = torch.maximum(top, sims.max(dim=1).values.double())
            if "max_scaled" in out:
                out["max_scaled"][r0 : r0 + len(img), j] = top.cpu().numpy()
            if "lse" in out:
                out["lse"][r0 : r0 + len(img), j] = lse.cpu().numpy()
            if "max" in out:
                out["max"][r0 : r0 + len(img), j] = mx.cpu().numpy()
            if "argmax" in out:
                out["argmax"][r0 : r0 + len(img), j] = arg.cpu().numpy()
    return out
