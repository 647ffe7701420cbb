"""Seeding k-means: distances of rows to centres in memory-bounded chunks, greedy k-means++,
k-means‖ (Bahmani et al., 2012) and random rows (docs/clustering.md, "Seeding at scale")."""

from __future__ import annotations

import math

import numpy as np
import torch

from clustermine.compute import faiss_module, rows_within


class Distances:
    """Chunked distances of all rows to a few or many centres (cosine: 1 - cos).

    ``backend`` ("torch" or "faiss") computes :meth:`nearest`, the assignment step;
    the seeding's distances to a few candidates (:meth:`block`) are torch's.
    """

    def __init__(
        self, data: torch.Tensor, metric: str, budget_bytes: int, backend: str = "torch"
    ) -> None:
        self.data = data
        self.metric = metric
        self.sqnorm = (data * data).sum(1) if metric == "euclidean" else None
        self.budget_bytes = budget_bytes
        self.backend = backend

    def chunk_rows(self, num_centres: int) -> int:
        # Scores, distances and argmin temporaries: about 4 float32 copies per element.
        return rows_within(self.budget_bytes, 16 * max(1, num_centres), len(self.data))

    def block(self, lo: int, hi: int, centres: torch.Tensor) -> torch.Tensor:
        dots = self.data[lo:hi] @ centres.T
        if self.metric == "cosine":
            return (1.0 - dots).clamp_min_(0.0)
        c2 = (centres * centres).sum(1)
        return (self.sqnorm[lo:hi, None] - 2.0 * dots + c2[None]).clamp_min_(0.0)

    def nearest(self, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Index of and distance to the nearest centre, for every row."""
        if self.backend == "faiss":
            return self._nearest_faiss(centres)
        n = len(self.data)
        rows = self.chunk_rows(len(centres))
        labels = torch.empty(n, dtype=torch.int64, device=self.data.device)
        dist = torch.empty(n, dtype=self.data.dtype, device=self.data.device)
        for lo in range(0, n, rows):
            x = self.data[lo : lo + rows]
            if self.metric == "cosine":  # the largest cosine, then 1 - cos: one pass
                d, i = (x @ centres.T).max(dim=1)
                d = (1.0 - d).clamp_min_(0.0)
            else:  # argmin of |c|² - 2⟨x, c⟩, then |x|² added back
                c2 = (centres * centres).sum(1)
                d, i = torch.addmm(c2[None], x, centres.T, alpha=-2.0).min(dim=1)
                d = (d + self.sqnorm[lo : lo + rows]).clamp_min_(0.0)
            labels[lo : lo + rows], dist[lo : lo + rows] = i, d
        return labels, dist

    def _nearest_faiss(self, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        faiss = faiss_module()
        c = np.ascontiguousarray(centres.numpy(), dtype=np.float32)
        x = self.data.numpy()
        if self.metric == "cosine":
            sims, idx = faiss.knn(x, c, 1, metric=faiss.METRIC_INNER_PRODUCT)
            dist = np.maximum(1.0 - sims[:, 0], 0.0)
        else:  # squared euclidean distances
            sq, idx = faiss.knn(x, c, 1, metric=faiss.METRIC_L2)
            dist = np.maximum(sq[:, 0], 0.0)
        return torch.from_numpy(idx[:, 0].copy()), torch.from_numpy(dist.astype(np.float32))


def kmeans_plus_plus(
    dist: Distances,
    num_clusters: int,
    generator: torch.Generator,
    local_trials: int | None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy k-means++ seeding: row indices of the initial centres [C].

    Each step samples candidates with probability proportional to the current distance to the
    nearest chosen centre and keeps the one that lowers the total distance most. One pass over
    the rows per step: the candidates' distances [trials, N] are kept, so the chosen one's
    update needs no second pass. ``weights`` [N] (k-means‖'s candidates: the rows each stands
    for) weigh every row's distance, and the first centre is drawn in proportion to them.
    """
    data = dist.data
    n, dev = len(data), data.device
    trials = local_trials or 2 + int(math.log(num_clusters))
    if weights is None:
        first = int(torch.randint(n, (1,), generator=generator))
    else:
        weights = weights.to(dev, torch.float64)
        first = int(torch.multinomial(weights.cpu(), 1, generator=generator))
    chosen = [first]
    closest = dist.nearest(data[first : first + 1])[1]
    rows = dist.chunk_rows(trials)
    cand_dist = torch.empty(trials, n, dtype=data.dtype, device=dev)
    for _ in range(1, num_clusters):
        mass = closest.double() if weights is None else closest.double() * weights
        cum = torch.cumsum(mass, 0)
        total = cum[-1]
        if total <= 0:  # every row coincides with a chosen centre: pick any unused row
            unused = torch.ones(n, dtype=torch.bool)
            unused[chosen] = False
            chosen.append(int(unused.nonzero()[0]))
            continue
        u = torch.rand(trials, generator=generator, dtype=torch.float64).to(dev) * total
        cand = torch.searchsorted(cum, u).clamp_(max=n - 1)
        centres = data[cand]
        for lo in range(0, n, rows):
            block = torch.minimum(closest[lo : lo + rows, None], dist.block(lo, lo + rows, centres))
            cand_dist[:, lo : lo + rows] = block.T
        cost = cand_dist.double() @ weights if weights is not None else cand_dist.sum(
            1, dtype=torch.float64)
        best = int(torch.argmin(cost))
        chosen.append(int(cand[best]))
        closest = cand_dist[best].clone()
    return torch.tensor(chosen, dtype=torch.int64, device=dev)


# k-means‖ (Bahmani et al., 2012): rounds of independent sampling and the oversampling factor
# ℓ = PARALLEL_OVERSAMPLING · C, r = PARALLEL_ROUNDS (about r·ℓ = 5·C candidates). ℓ = C
# found the planted concepts as often as the paper's ℓ = 2·C and seeds twice as fast; ℓ = C/2
# was faster still but found them less often (docs/clustering.md, "Seeding at scale").
PARALLEL_ROUNDS = 5
PARALLEL_OVERSAMPLING = 1.0


def parallel_candidates(
    dist: Distances, ell: float, rounds: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means‖'s sampling: a mask [N] of the kept rows. One row at random, then ``rounds``
    rounds that keep every row independently with probability min(1, ℓ·d(x)/Σd), d being the
    distance to the nearest kept row (squared euclidean, or 1 - cos: both d² of the paper)."""
    data = dist.data
    n, dev = len(data), data.device
    first = int(torch.randint(n, (1,), generator=generator))
    kept = torch.zeros(n, dtype=torch.bool, device=dev)
    kept[first] = True
    closest = dist.nearest(data[first : first + 1])[1].double()
    for _ in range(rounds):
        total = float(closest.sum())
        if total <= 0:
            break
        p = (ell * closest / total).clamp_(max=1.0)
        new = (torch.rand(n, generator=generator, dtype=torch.float64).to(dev) < p) & ~kept
        new = new.nonzero().squeeze(1)
        if not len(new):
            continue
        kept[new] = True
        closest = torch.minimum(closest, dist.nearest(data[new])[1].double())
    return kept


def kmeans_parallel(
    dist: Distances,
    num_clusters: int,
    generator: torch.Generator,
    local_trials: int | None,
) -> torch.Tensor:
    """k-means‖ seeding: row indices of the initial centres [C].

    ``PARALLEL_ROUNDS`` rounds of independent sampling (:func:`parallel_candidates`, ℓ =
    ``PARALLEL_OVERSAMPLING``·C): a few large matrix products instead of k-means++'s C
    sequential passes. The kept rows (about ℓ·rounds) are weighted by the rows nearest to
    each, and greedy k-means++ on them, weighted, picks the C centres.
    """
    if dist.backend != "torch":  # torch's chunked products beat faiss.knn on these passes
        dist = Distances(dist.data, dist.metric, dist.budget_bytes)
    data = dist.data
    n, dev = len(data), data.device
    kept = parallel_candidates(dist, PARALLEL_OVERSAMPLING * num_clusters, PARALLEL_ROUNDS,
                               generator)  # fmt: skip
    cand = kept.nonzero().squeeze(1)
    if len(cand) < num_clusters:  # too few distinct rows sampled: fill with unused rows
        extra = torch.randperm(n, generator=generator).to(dev)
        extra = extra[~kept[extra]][: num_clusters - len(cand)]
        cand = torch.cat([cand, extra]).sort().values
    owner = dist.nearest(data[cand])[0]
    weights = torch.bincount(owner, minlength=len(cand)).clamp_(min=1)
    pick = Distances(data[cand], dist.metric, dist.budget_bytes)
    return cand[kmeans_plus_plus(pick, num_clusters, generator, local_trials, weights)]


def random_seeds(n: int, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Random seeding: ``num_clusters`` distinct row indices drawn uniformly (as faiss)."""
    return torch.randperm(n, generator=generator)[:num_clusters]
