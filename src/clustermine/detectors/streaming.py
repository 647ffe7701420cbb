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

from clustermine.zeroshot import as_unit_tensor, block_shape

REDUCTIONS = ("lse", "max")


def segment_reduce(
    images: np.ndarray,
    texts: torch.Tensor,
    segments: Sequence[tuple[int, int]],
    scale: float = 1.0,
    budget_bytes: int = 256 * 2**20,
    reductions: Sequence[str] = ("lse",),
) -> dict[str, np.ndarray]:
    """Per image and segment ``[start, stop)`` of ``texts``: logsumexp of ``scale``·cosine
    (``"lse"``) and/or the max cosine (``"max"``). Returns float64 arrays [N, len(segments)].

    ``texts`` are unit rows already on the compute device; ``images`` are normalised here.
    Empty segments reduce to -inf.
    """
    bad = set(reductions) - set(REDUCTIONS)
    if bad:
        raise ValueError(f"unknown reductions {sorted(bad)}; known: {REDUCTIONS}")
    dev = texts.device
    n, n_seg = len(images), len(segments)
    widest = max([stop - start for start, stop in segments] + [1])
    rows, cols = block_shape(n, widest, budget_bytes)
    out = {r: np.full((n, n_seg), -np.inf) for r in reductions}
    for r0 in range(0, n, rows):
        img = as_unit_tensor(images[r0 : r0 + rows], dev)
        for j, (start, stop) in enumerate(segments):
            lse = torch.full((len(img),), -np.inf, dtype=torch.float64, device=dev)
            mx = torch.full((len(img),), -np.inf, dtype=torch.float64, device=dev)
            for c0 in range(start, stop, cols):
                sims = img @ texts[c0 : min(stop, c0 + cols)].T
                if "max" in out:
                    mx = torch.maximum(mx, sims.max(dim=1).values.double())
                if "lse" in out:
                    sims.mul_(scale)
                    lse = torch.logaddexp(lse, torch.logsumexp(sims, dim=1).double())
            if "lse" in out:
                out["lse"][r0 : r0 + len(img), j] = lse.cpu().numpy()
            if "max" in out:
                out["max"][r0 : r0 + len(img), j] = mx.cpu().numpy()
    return out
