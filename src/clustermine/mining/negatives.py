"""Choosing negative labels: the rest of the corpus, or the candidates least like the
positives (NegLabel's rule: lowest 0.95-quantile cosine to the positives)."""

from __future__ import annotations

import numpy as np
import torch

from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.compute import pick_device, rows_within

NEGATIVE_MODES = ("complement", "dissimilar", "none")


def quantile_similarity(
    candidates: np.ndarray,
    anchors: np.ndarray,
    q: float = 0.95,
    budget_bytes: int = 256 * 2**20,
    device: str | None = None,
) -> np.ndarray:
    """For every candidate row, the ``q``-quantile of its cosines to all anchor rows.

    Linear interpolation between order statistics (numpy's and torch's default); computed in
    candidate chunks because the full matrix can be 270k × 1000.
    """
    if not 0.0 <= q <= 1.0:
        raise MinerConfigError(f"quantile must be in [0, 1], got {q}")
    n, m = len(candidates), len(anchors)
    if m == 0:
        raise MinerConfigError("quantile similarity to an empty anchor set")
    dev = pick_device(device)
    a = torch.as_tensor(np.asarray(anchors, np.float32), device=dev)
    a = torch.nn.functional.normalize(a, dim=1)
    pos = q * (m - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    frac = pos - lo
    # Each row of the block needs m cosines plus kthvalue's working copy.
    rows = rows_within(budget_bytes, 4 * 3 * m, n)
    out = np.empty(n, dtype=np.float64)
    for r0 in range(0, n, rows):
        c = torch.as_tensor(np.asarray(candidates[r0 : r0 + rows], np.float32), device=dev)
        sims = torch.nn.functional.normalize(c, dim=1) @ a.T
        v_lo = torch.kthvalue(sims, lo + 1, dim=1).values.double()
        v_hi = torch.kthvalue(sims, hi + 1, dim=1).values.double() if hi != lo else v_lo
        out[r0 : r0 + len(c)] = (v_lo + frac * (v_hi - v_lo)).cpu().numpy()
    return out


def select_negatives(
    inputs: MiningInputs,
    exclude: np.ndarray,
    anchors: np.ndarray,
    mode: str = "complement",
    num_negatives: int = 10000,
    quantile: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Negative corpus indices and their scores (``quantile``-similarity to ``anchors``; NaN
    for the complement). Candidates are the corpus rows not in ``exclude``."""
    if mode not in NEGATIVE_MODES:
        raise MinerConfigError(f"negatives must be one of {NEGATIVE_MODES}, got {mode!r}")
    n = len(inputs.corpus_names)
    candidates = np.setdiff1d(np.arange(n, dtype=np.int64), exclude)
    if mode == "none":
        return np.empty(0, np.int64), np.empty(0)
    if mode == "complement":
        return candidates, np.full(len(candidates), np.nan)
    if num_negatives <= 0:
        raise MinerConfigError(f"num_negatives must be positive, got {num_negatives}")
    qsim = quantile_similarity(
        inputs.corpus_emb[candidates], anchors, quantile, inputs.budget_bytes, inputs.device
    )
    # Stable sort: equal similarities keep corpus order, so the choice is reproducible.
    keep = np.argsort(qsim, kind="stable")[:num_negatives]
    return candidates[keep], qsim[keep]
