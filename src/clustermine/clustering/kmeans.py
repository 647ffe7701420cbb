"""k-means with k-means++, k-means‖ or random seeding, in memory-bounded chunks on the GPU or CPU.

``metric="cosine"`` (the default) is spherical k-means: rows are L2-normalised, each sample goes
to the centre of highest cosine and centres are the normalised means of their members.
``metric="euclidean"`` is ordinary (Lloyd) k-means on the raw rows. No [N, C] matrix is ever
held beyond one chunk, so C = 4000 on 1.28M samples fits any GPU.

``backend`` chooses who runs Lloyd's iterations: faiss's own k-means (``faiss.Kmeans``, the
default on the CPU) or the torch code here (on a GPU, and without faiss). Both start from the
same seeding (k-means‖ or k-means++ on a sample, or random rows: :mod:`.seeding`), use every
row and stop at the same relative tolerance; they agree up to float rounding and their
different handling of clusters that empty out (docs/clustering.md, "Backends").
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from clustermine import catalog
from clustermine.cluster_analysis import clustering_health
from clustermine.clustering import (
    ClusterConfigError,
    ClusterResult,
    check_config_values,
    config_from_params,
)
from clustermine.clustering.seeding import (
    Distances,
    kmeans_parallel,
    kmeans_plus_plus,
    random_seeds,
)
from clustermine.compute import (
    as_unit_tensor,
    default_budget,
    faiss_module,
    pick_backend,
    pick_device,
    rows_within,
)

log = logging.getLogger(__name__)



_DEFAULTS = catalog.clusterer("kmeans").defaults


class TooManyClusters(ClusterConfigError):
    """C is larger than N, the number of images to cluster (k-means needs a sample per
    centre; TEMI would leave clusters empty by construction)."""

    def __init__(self, method: str, num_clusters: int, num_samples: int,
                 message: str | None = None):
        self.num_clusters, self.num_samples = int(num_clusters), int(num_samples)
        super().__init__(message or (
            f"{method}: C={self.num_clusters} > N={self.num_samples} images: more clusters "
            f"than there are images to cluster; C must be at most {self.num_samples}"))


@dataclass
class KMeansConfig:
    """k-means settings; names, defaults and meaning are declared in the catalog
    (:mod:`clustermine.catalog.clusterers`, docs/clustering.md)."""

    num_clusters: int
    metric: str = _DEFAULTS["metric"]
    max_iter: int = _DEFAULTS["max_iter"]
    # Stop when the inertia improves by less than this fraction between iterations.
    tol: float = _DEFAULTS["tol"]
    # Independent seedings; the run with the lowest inertia is kept.
    n_init: int = _DEFAULTS["n_init"]
    # Candidates tried per k-means++ step (greedy k-means++); None: 2 + ln C, as scikit-learn.
    local_trials: int | None = _DEFAULTS["local_trials"]
    # Rows k-means++ seeds from: a seeded random sample of this many rows (None: all rows up to
    # max(100,000, 32·C)). Seeding makes C sequential passes over its rows, so on 1.28M rows
    # with C = 4000 a sample is what keeps it in minutes; Lloyd then runs on every row.
    init_size: int | None = _DEFAULTS["init_size"]
    seed: int = _DEFAULTS["seed"]
    # Seeding: greedy k-means++ or k-means‖ (on init_size rows), or C distinct random rows.
    init: str = _DEFAULTS["init"]
    # Who computes the assignments: auto (faiss on the CPU when installed, else torch), faiss
    # or torch.
    backend: str = _DEFAULTS["backend"]

    def __post_init__(self) -> None:
        check_config_values(self, "kmeans")  # the catalog's ranges and choices
        if self.num_clusters < 1:
            raise ClusterConfigError(f"kmeans: C must be at least 1, got {self.num_clusters}")
        if self.init_size is not None and self.init_size < self.num_clusters:
            raise ClusterConfigError(
                f"kmeans: init_size must be at least C={self.num_clusters}, got {self.init_size}"
            )


# The parameter dataclass of this clusterer (its fields are the catalog's parameters).
CONFIG = KMeansConfig


def init_rows(n: int, cfg: KMeansConfig, generator: torch.Generator) -> torch.Tensor | None:
    """The seeded sample of rows k-means++ and k-means‖ seed from, or None for all rows."""
    size = cfg.init_size or max(100_000, 32 * cfg.num_clusters)
    if size >= n:
        return None
    return torch.randperm(n, generator=generator)[:size].sort().values


def _update_centres(
    data: torch.Tensor,
    labels: torch.Tensor,
    dist: torch.Tensor,
    num_clusters: int,
    metric: str,
    rows: int,
) -> tuple[torch.Tensor, int]:
    """Means of the members (normalised for cosine); empty clusters take the farthest rows."""
    d = data.shape[1]
    sums = torch.zeros(num_clusters, d, dtype=torch.float64, device=data.device)
    # The sums are float64 across chunks of rows. On the CPU a chunk is summed in float32 first
    # (index_add runs in order there, so it is deterministic; twice as fast as a float64 copy
    # of the chunk, and within 1e-6 of it); on a GPU, whose atomic adds come in any order, the
    # chunk is summed in float64 so that the order cannot show in the float32 centres.
    on_cpu = data.device.type == "cpu"
    part = torch.zeros(num_clusters, d, dtype=data.dtype, device=data.device) if on_cpu else None
    for lo in range(0, len(data), rows):
        if on_cpu:
            part.zero_().index_add_(0, labels[lo : lo + rows], data[lo : lo + rows])
            sums += part
        else:
            sums.index_add_(0, labels[lo : lo + rows], data[lo : lo + rows].double())
    counts = torch.bincount(labels, minlength=num_clusters)
    empty = (counts == 0).nonzero().squeeze(1)
    if len(empty):
        far = torch.topk(dist, len(empty)).indices
        sums[empty] = data[far].double()
        counts[empty] = 1
    if metric == "cosine":
        centres = torch.nn.functional.normalize(sums, dim=1)
    else:
        centres = sums / counts[:, None].double()
    return centres.to(data.dtype), int(len(empty))


def lloyd(
    dist: Distances, centres: torch.Tensor, cfg: KMeansConfig
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Lloyd iterations from ``centres``; returns labels, centres and the inertia history."""
    history: list[float] = []
    prev = None
    # Rows per chunk of the centre sums (a float64 copy of the chunk on a GPU).
    rows = rows_within(dist.budget_bytes, 8 * dist.data.shape[1])
    for it in range(cfg.max_iter):
        labels, d = dist.nearest(centres)
        inertia = float(d.double().sum())
        history.append(inertia)
        changed = len(labels) if prev is None else int((labels != prev).sum())
        log.debug("kmeans iteration %d: inertia %.6g, %d changed", it + 1, inertia, changed)
        if changed == 0:
            break
        if len(history) > 1 and history[-2] - inertia <= cfg.tol * abs(history[-2]):
            break
        centres, n_empty = _update_centres(dist.data, labels, d, cfg.num_clusters, cfg.metric, rows)
        if n_empty:
            log.info("kmeans iteration %d: %d empty clusters re-seeded", it + 1, n_empty)
        prev = labels
    else:
        # Labels and inertia must belong to the final centres.
        labels, d = dist.nearest(centres)
        history.append(float(d.double().sum()))
    return labels, centres, history


def lloyd_faiss(
    dist: Distances, centres: torch.Tensor, cfg: KMeansConfig
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """faiss's own Lloyd iterations (``faiss.Kmeans``) from ``centres``, then one assignment to
    the final centres; returns labels, centres and the inertia history like :func:`lloyd`.

    faiss sums the centres in float32 over its threads, splits a large cluster when one
    empties, and stops when the objective changes by less than ``tol`` relative
    (``early_stop_threshold``) or after ``max_iter`` updates; every row takes part (no
    subsampling)."""
    faiss = faiss_module()
    x = dist.data.numpy()
    n, d = x.shape
    km = faiss.Kmeans(d, cfg.num_clusters, niter=cfg.max_iter, spherical=cfg.metric == "cosine",
                      seed=cfg.seed, max_points_per_centroid=n // cfg.num_clusters + 1,
                      min_points_per_centroid=1, verbose=False)  # fmt: skip
    if hasattr(km.cp, "early_stop_threshold"):
        km.cp.early_stop_threshold = float(cfg.tol)
    else:  # faiss before its early stop: all max_iter iterations run
        log.warning("kmeans: faiss %s has no early stop; running %d iterations",
                    faiss.__version__, cfg.max_iter)  # fmt: skip
    km.train(x, init_centroids=np.ascontiguousarray(centres.numpy(), dtype=np.float32))
    # faiss's objective per iteration: Σ cos (spherical) or Σ squared distances.
    obj = [float(o) for o in km.obj]
    history = [n - o for o in obj] if cfg.metric == "cosine" else obj
    final = torch.from_numpy(np.ascontiguousarray(km.centroids, dtype=np.float32))
    labels, dist_to = dist.nearest(final)
    history.append(float(dist_to.double().sum()))
    return labels, final, history


def fit_kmeans(
    embeddings: np.ndarray,
    num_clusters: int,
    params: Mapping[str, Any] | KMeansConfig | None = None,
    *,
    neighbors=None,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    copy: bool = True,
) -> ClusterResult:
    """Cluster ``embeddings`` [N, D] into ``num_clusters`` with k-means++ and Lloyd
    (``neighbors`` is accepted for the common clusterer interface and not used).

    ``budget_bytes`` bounds the working memory beyond the data (default 1 GiB on a GPU,
    256 MiB on the CPU). ``copy=False`` lets the cosine metric normalise a float32 array's
    rows in place (``embeddings`` is overwritten; saves a copy of the data).
    """
    if isinstance(params, KMeansConfig):
        cfg = dataclasses.replace(params, num_clusters=int(num_clusters))
    else:
        cfg = config_from_params(KMeansConfig, num_clusters, params or {}, "kmeans")
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ClusterConfigError(f"kmeans needs embeddings [N, D], got shape {x.shape}")
    if len(x) < cfg.num_clusters:
        raise TooManyClusters("kmeans", cfg.num_clusters, len(x))
    dev = pick_device(device)
    if budget_bytes is None:
        budget_bytes = default_budget(dev)
    try:
        backend = pick_backend(cfg.backend, dev)
    except ValueError as err:
        raise ClusterConfigError(f"kmeans: {err}") from err
    if cfg.metric == "cosine":
        data = as_unit_tensor(x, dev, inplace=not copy)
    else:
        data = torch.from_numpy(x).to(dev)
    dist = Distances(data, cfg.metric, budget_bytes, backend)
    generator = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    best = None
    for run in range(cfg.n_init):
        seeded, seed_rows = time.perf_counter(), len(data)
        if cfg.init == "random":
            init = random_seeds(len(data), cfg.num_clusters, generator).to(dev)
        else:
            seed_with = kmeans_parallel if cfg.init == "kmeans||" else kmeans_plus_plus
            if (sample := init_rows(len(data), cfg, generator)) is None:
                init = seed_with(dist, cfg.num_clusters, generator, cfg.local_trials)
            else:
                sample, seed_rows = sample.to(dev), len(sample)
                seeding = Distances(data[sample], cfg.metric, budget_bytes)
                init = sample[seed_with(seeding, cfg.num_clusters, generator, cfg.local_trials)]
        log.info("kmeans %s seeding from %d of %d rows (%.1fs)", cfg.init, seed_rows, len(data),
                 time.perf_counter() - seeded)  # fmt: skip
        iterate = lloyd_faiss if backend == "faiss" else lloyd
        labels, _, history = iterate(dist, data[init].clone(), cfg)
        log.info(
            "kmeans run %d/%d: %d iterations, inertia %.6g (%s, %s seeding, %s, C=%d, N=%d, %.1fs)",
            run + 1,
            cfg.n_init,
            len(history),
            history[-1],
            cfg.metric,
            cfg.init,
            backend,
            cfg.num_clusters,
            len(x),
            time.perf_counter() - start,
        )
        if best is None or history[-1] < best[1][-1]:
            best = (labels, history)
    labels, history = best
    assignments = labels.cpu().numpy().astype(np.int64)
    health = clustering_health(
        assignments, cfg.num_clusters, iterations=len(history), max_iter=cfg.max_iter
    )
    for message in health["messages"]:
        log.warning("kmeans: %s", message)
    return ClusterResult(
        assignments=assignments,
        num_clusters=cfg.num_clusters,
        clusterer="kmeans",
        head_losses=np.array([history[-1]]),
        best_head=0,
        params=dataclasses.asdict(cfg),
        seed=cfg.seed,
        loss_history=np.asarray(history, dtype=np.float64)[:, None],
        attrs={
            "device": str(dev),
            "backend": backend,
            "backend_version": (
                faiss_module().__version__ if backend == "faiss" else torch.__version__
            ),
            "train_seconds": time.perf_counter() - start,
            "iterations": len(history),
            "num_nonempty_clusters": int(len(np.unique(assignments))),
        },
        health=health,
    )
