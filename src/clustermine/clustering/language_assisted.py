"""Language-assisted clustering (Peng et al., ICCV 2025): every image gets a text embedding
retrieved from a set of filtered names (GradNorm's positives, a label set), and spherical
k-means clusters the concatenation [x̂, r(x)].

    r(x) = normalise(Σ_n softmax_n(⟨x̂, t_n⟩ / τ_r) · t_n)

over the label set's positives t_n (normalised), τ_r = ``tau_r`` (0.006 for ImageNet in the
paper). The retrieval runs in image blocks within the memory budget; the k-means is
:func:`clustermine.clustering.kmeans.fit_kmeans` with ``metric: cosine`` (the concatenation
of two unit vectors has a constant norm, so cosine equals the official inner product).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

import numpy as np
import torch

from clustermine.clustering import ClusterConfigError, ClusterResult
from clustermine.clustering.kmeans import fit_kmeans
from clustermine.compute import default_budget, pick_device, rows_within
from clustermine.h5io import TextEmbeddings, normalize

log = logging.getLogger(__name__)


def retrieve_text(
    images: np.ndarray,
    texts: np.ndarray,
    tau_r: float,
    budget_bytes: int,
    device=None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """r(x) of every image row (float32 [N, D], unit rows), written into ``out`` when given."""
    dev = pick_device(device)
    t = torch.nn.functional.normalize(torch.as_tensor(np.asarray(texts, np.float32), device=dev))
    rows = rows_within(budget_bytes, 4 * 3 * max(1, len(t)), len(images))
    if out is None:
        out = np.empty((len(images), t.shape[1]), dtype=np.float32)
    for r0 in range(0, len(images), rows):
        x = torch.as_tensor(normalize(images[r0 : r0 + rows]), device=dev)
        weights = torch.softmax((x @ t.T).double() / tau_r, dim=1).float()
        out[r0 : r0 + len(x)] = torch.nn.functional.normalize(weights @ t, dim=1).cpu().numpy()
    return out


def fit_language_assisted(
    embeddings: np.ndarray,
    num_clusters: int,
    params: Mapping[str, Any] | None = None,
    *,
    neighbors=None,
    device=None,
    budget_bytes: int | None = None,
    texts: TextEmbeddings | None = None,
    copy: bool = True,
) -> ClusterResult:
    """Cluster ``embeddings`` [N, D] with the retrieved text of ``texts`` (a label set's
    positives) concatenated; ``params``: ``tau_r`` and the k-means parameters. ``embeddings``
    is never overwritten (the joint rows are a new array, which k-means normalises in place
    whatever ``copy`` is)."""
    from clustermine import catalog

    try:
        resolved = catalog.clusterer("language_assisted").resolve(
            {k: v for k, v in dict(params or {}).items() if k != "method"}
        )
    except catalog.CatalogError as err:
        raise ClusterConfigError(str(err)) from err
    if texts is None or not len(texts.names):
        raise ClusterConfigError(
            "language_assisted needs the filtered names (names_from: a label set with positives)"
        )
    tau_r = float(resolved.pop("tau_r"))  # positive: checked against the catalog's schema
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != texts.embeddings.shape[1]:
        raise ClusterConfigError(
            f"language_assisted: image embeddings {x.shape} and name embeddings "
            f"{texts.embeddings.shape} differ in dimension: they come from different models"
        )
    dev = pick_device(device)
    budget = budget_bytes or default_budget(dev)
    log.info(
        "language_assisted: retrieving text for %d images over %d names (tau_r=%g)",
        len(x),
        len(texts.names),
        tau_r,
    )
    # [x̂, r(x)] written where it will lie: the image half normalised a block of rows at a
    # time, the text half by the retrieval, so no temporary is as large as the data.
    d = x.shape[1]
    joint = np.empty((len(x), 2 * d), dtype=np.float32)
    rows = rows_within(budget, 4 * 2 * d, len(x))
    for r0 in range(0, len(x), rows):
        joint[r0 : r0 + rows, :d] = normalize(x[r0 : r0 + rows])
    retrieve_text(x, texts.embeddings, tau_r, budget, dev, out=joint[:, d:])
    result = fit_kmeans(joint, num_clusters, {**resolved, "metric": "cosine"}, device=dev,
                        budget_bytes=budget, copy=False)  # fmt: skip
    return dataclasses.replace(
        result,
        clusterer="language_assisted",
        params={"tau_r": tau_r, **resolved},
        attrs={**result.attrs, "num_names": len(texts.names)},
    )


# The parameter dataclass of this clusterer: none (its parameters are tau_r and k-means').
CONFIG = None
