"""TEMI clustering (Adaloglou et al., BMVC 2023) of fixed embeddings.

Each sample is paired with a random one of its k nearest neighbours. H clustering heads (MLP
D→512→256 with GELU, L2-normalised, then a weight-normalised linear layer to C outputs) are
trained as a student, with an EMA copy as teacher, to maximise a weighted pointwise mutual
information between the student's prediction for one element of a pair and the teacher's for
the other (:func:`temi_loss`). All heads live in stacked [H, ...] weight tensors and run as
one batched matrix product per layer; the head with the lowest final loss is used and every
sample goes to the argmax of the teacher's best head.

Training follows the official code (HHU-MMBS/TEMI-official-BMVC2023) where it and its README
agree, and the README's commands (the paper's runs) where they differ; docs/clustering.md says
which source every default follows.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clustermine import catalog
from clustermine.cluster_analysis import clustering_health, uniform_temi_loss
from clustermine.clustering import (
    ClusterConfigError,
    ClusterResult,
    check_config_values,
    config_from_params,
)
from clustermine.clustering.kmeans import TooManyClusters
from clustermine.knn import Neighbors, search_knn
from clustermine.compute import default_budget, pick_device, rows_within

log = logging.getLogger(__name__)


_DEFAULTS = catalog.clusterer("temi").defaults


@dataclass
class TEMIConfig:
    """TEMI hyperparameters; names, defaults and meaning are declared in the catalog
    (:mod:`clustermine.catalog.clusterers`, docs/clustering.md)."""

    num_clusters: int
    heads: int = _DEFAULTS["heads"]
    knn: int = _DEFAULTS["knn"]
    knn_index: str = _DEFAULTS["knn_index"]
    knn_nlist: int | None = _DEFAULTS["knn_nlist"]
    knn_nprobe: int = _DEFAULTS["knn_nprobe"]
    epochs: int = _DEFAULTS["epochs"]
    batch_size: int = _DEFAULTS["batch_size"]
    lr: float = _DEFAULTS["lr"]
    min_lr: float | None = _DEFAULTS["min_lr"]
    warmup_epochs: int = _DEFAULTS["warmup_epochs"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    teacher_momentum: float = _DEFAULTS["teacher_momentum"]
    final_teacher_momentum: float | None = _DEFAULTS["final_teacher_momentum"]
    student_temp: float = _DEFAULTS["student_temp"]
    teacher_temp: float = _DEFAULTS["teacher_temp"]
    beta: float = _DEFAULTS["beta"]
    prior_momentum: float = _DEFAULTS["prior_momentum"]
    hidden_dim: int = _DEFAULTS["hidden_dim"]
    bottleneck_dim: int = _DEFAULTS["bottleneck_dim"]
    freeze_last_layer_epochs: int = _DEFAULTS["freeze_last_layer_epochs"]
    zscore: bool = _DEFAULTS["zscore"]
    l2_normalize: bool = _DEFAULTS["l2_normalize"]
    seed: int = _DEFAULTS["seed"]

    def __post_init__(self) -> None:
        if self.num_clusters < 2:
            raise ClusterConfigError(f"temi: C must be at least 2, got {self.num_clusters}")
        check_config_values(self, "temi")  # the catalog's ranges and choices

    def peak_lr(self, batch_size: int) -> float:
        return self.lr * batch_size / 256


# The parameter dataclass of this clusterer (its fields are the catalog's parameters).
CONFIG = TEMIConfig


def temi_loss(
    student_logp_x: torch.Tensor,
    student_logp_y: torch.Tensor,
    teacher_logp_x: torch.Tensor,
    teacher_logp_y: torch.Tensor,
    prior: torch.Tensor,
    beta: float = 0.6,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-head TEMI loss [H] for pairs (x, y).

    Inputs are log-probabilities [H, B, C] of the student (p) and teacher (q) for the two
    elements of each pair, and the cluster prior π [H, C]. With
    pmi(v, u) = log Σ_k (p_k(v) q_k(u))^β / π_k (computed as a logsumexp) and the pair weight
    w = mean over heads of Σ_k q_k(x) q_k(y), the loss of a head is
    −½ (mean_B[w · pmi(x, y)] + mean_B[w · pmi(y, x)]). ``weight`` [B] overrides w (for
    callers that compute heads separately).
    """
    if weight is None:
        with torch.no_grad():
            weight = (teacher_logp_x.exp() * teacher_logp_y.exp()).sum(-1).mean(0)
    log_prior = torch.log(prior).unsqueeze(-2)

    def pmi(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(beta * (student_logp + teacher_logp) - log_prior, dim=-1)

    forward = (weight * pmi(student_logp_x, teacher_logp_y)).mean(-1)
    backward = (weight * pmi(student_logp_y, teacher_logp_x)).mean(-1)
    return -0.5 * (forward + backward)


class BatchedHeads(nn.Module):
    """H clustering heads as stacked weights; ``forward`` gives logits [H, B, C].

    Initialised as the official code leaves its heads: MLP weights N(0, 0.02²) (its truncated
    normal cuts at ±2, a hundred standard deviations out), biases 0; the weight-normalised last
    layer keeps PyTorch's default ``nn.Linear`` initialisation, U(−1/√fan_in, 1/√fan_in) with
    fan_in = bottleneck_dim (column norm ≈ 0.58), and its gain g starts at 1.
    """

    def __init__(
        self,
        heads: int,
        in_dim: int,
        num_clusters: int,
        hidden_dim: int = 512,
        bottleneck_dim: int = 256,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()

        def normal(*shape: int, std: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=generator) * std)

        self.w1 = normal(heads, in_dim, hidden_dim, std=0.02)
        self.b1 = nn.Parameter(torch.zeros(heads, hidden_dim))
        self.w2 = normal(heads, hidden_dim, bottleneck_dim, std=0.02)
        self.b2 = nn.Parameter(torch.zeros(heads, bottleneck_dim))
        # Weight-normalised last layer: direction v (normalised over its inputs) and gain g.
        # PyTorch's nn.Linear default (kaiming_uniform_ with a = √5) is U(−1/√fan_in, 1/√fan_in).
        bound = 1.0 / math.sqrt(bottleneck_dim)
        uniform = torch.rand(heads, bottleneck_dim, num_clusters, generator=generator)
        self.v = nn.Parameter((2 * uniform - 1) * bound)
        self.g = nn.Parameter(torch.ones(heads, 1, num_clusters))

    @property
    def num_heads(self) -> int:
        return self.w1.shape[0]

    def decayed_parameters(self) -> list[nn.Parameter]:
        # As the official code groups them: every weight matrix, the last layer's gain too
        # (its weight_g is [C, 1], 2-D); only biases are not decayed.
        return [self.w1, self.w2, self.v, self.g]

    def other_parameters(self) -> list[nn.Parameter]:
        return [self.b1, self.b2]

    def last_layer(self) -> list[nn.Parameter]:
        return [self.v, self.g]

    def forward(self, x: torch.Tensor, head: int | None = None) -> torch.Tensor:
        sl = slice(None) if head is None else slice(head, head + 1)
        h = torch.einsum("bd,hde->hbe", x, self.w1[sl]) + self.b1[sl].unsqueeze(1)
        h = torch.baddbmm(self.b2[sl].unsqueeze(1), F.gelu(h), self.w2[sl])
        h = F.normalize(h, dim=-1)
        v = self.v[sl]
        weight = v * (self.g[sl] / v.norm(dim=1, keepdim=True).clamp_min(1e-12))
        return torch.bmm(h, weight)


# Rows per block of the z-score's sum of squares.
ZSCORE_ROWS = 65_536


def prepare_embeddings(
    embeddings: np.ndarray, zscore: bool, l2_normalize: bool, copy: bool = True
) -> np.ndarray:
    """The heads' input, float32: with ``zscore`` every dimension minus its mean, divided by
    its standard deviation (N − 1 in the denominator, as ``torch.std``; statistics in float64
    without a float64 copy of the data); then, with ``l2_normalize``, every row divided by its
    norm. Neither: the embeddings as they are (the official code's default). ``copy=False``
    works in place on a float32 array (``embeddings`` is overwritten)."""
    x = np.array(embeddings, dtype=np.float32) if copy else np.asarray(embeddings, np.float32)
    if zscore:
        x -= x.mean(axis=0, dtype=np.float64).astype(np.float32)
        # Squares summed a block of rows at a time: a whole x * x would be one more copy of
        # the data (5.2 GB for ImageNet train at D = 1024).
        squares = np.zeros(x.shape[1], dtype=np.float64)
        for lo in range(0, len(x), ZSCORE_ROWS):
            block = x[lo : lo + ZSCORE_ROWS]
            squares += (block * block).sum(axis=0, dtype=np.float64)
        std = np.sqrt(squares / max(len(x) - 1, 1))
        x /= np.where(std > 1e-12, std, 1.0).astype(np.float32)
    if l2_normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def cosine_schedule(
    start: float, end: float, total_steps: int, warmup_steps: int = 0
) -> np.ndarray:
    """Per-step values as the official code (and DINO) schedules them: a linear ramp from 0 to
    ``start`` over ``warmup_steps`` (both ends included), then ``end + ½ (start − end)(1 +
    cos(π i / n))`` for the remaining n steps, i = 0 … n − 1 (it approaches ``end`` without
    reaching it). A run shorter than its warm-up stops part-way up the ramp (the official
    code refuses such a run)."""
    ramp = np.linspace(0.0, start, warmup_steps)[:total_steps]
    rest = np.arange(total_steps - len(ramp))
    cosine = end + 0.5 * (start - end) * (1 + np.cos(np.pi * rest / max(len(rest), 1)))
    return np.concatenate([ramp, cosine])


def lr_schedule(cfg: TEMIConfig, steps_per_epoch: int, batch_size: int) -> np.ndarray:
    """Per-step learning rate: linear warm-up from 0 to ``lr`` · batch/256 over
    ``warmup_epochs``, then cosine decay to ``min_lr`` · batch/256 (``min_lr`` None: ``lr``,
    a constant rate after warm-up)."""
    peak = cfg.peak_lr(batch_size)
    final = peak if cfg.min_lr is None else cfg.min_lr * batch_size / 256
    total = cfg.epochs * steps_per_epoch
    return cosine_schedule(peak, final, total, cfg.warmup_epochs * steps_per_epoch)


def momentum_schedule(cfg: TEMIConfig, steps_per_epoch: int) -> np.ndarray:
    """Per-step teacher momentum: cosine from ``teacher_momentum`` to
    ``final_teacher_momentum`` over the whole run (None: constant)."""
    start, end = cfg.teacher_momentum, cfg.final_teacher_momentum
    return cosine_schedule(start, start if end is None else end, cfg.epochs * steps_per_epoch)


class TEMITrainer:
    """Student/teacher heads, prior and optimiser; :meth:`fit` trains and assigns."""

    def __init__(
        self, cfg: TEMIConfig, in_dim: int, device: torch.device, budget_bytes: int | None = None
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.budget_bytes = budget_bytes or default_budget(device)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.student = BatchedHeads(
            cfg.heads,
            in_dim,
            cfg.num_clusters,
            cfg.hidden_dim,
            cfg.bottleneck_dim,
            self.generator,
        ).to(device)
        self.teacher = BatchedHeads(
            cfg.heads, in_dim, cfg.num_clusters, cfg.hidden_dim, cfg.bottleneck_dim
        ).to(device)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.prior = torch.full(
            (cfg.heads, cfg.num_clusters), 1.0 / cfg.num_clusters, device=device
        )
        self.optimizer = torch.optim.AdamW(
            [
                {"params": self.student.decayed_parameters(), "weight_decay": cfg.weight_decay},
                {"params": self.student.other_parameters(), "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )

    def step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        lr: float,
        freeze_last: bool,
        momentum: float | None = None,
    ) -> torch.Tensor:
        """One optimisation step on pairs (x, y) at learning rate ``lr`` and teacher momentum
        ``momentum`` (None: ``teacher_momentum``); returns the per-head losses [H]."""
        cfg = self.cfg
        b = len(x)
        xy = torch.cat([x, y])
        with torch.no_grad():
            teacher_logp = F.log_softmax(self.teacher(xy) / cfg.teacher_temp, dim=-1)
            # The prior is updated before the loss uses it, as in the TEMI reference code.
            batch_mean = teacher_logp.exp().mean(dim=1)
            self.prior.mul_(cfg.prior_momentum).add_(batch_mean, alpha=1 - cfg.prior_momentum)
        student_logp = F.log_softmax(self.student(xy) / cfg.student_temp, dim=-1)
        losses = temi_loss(
            student_logp[:, :b],
            student_logp[:, b:],
            teacher_logp[:, :b],
            teacher_logp[:, b:],
            self.prior,
            cfg.beta,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        # Mean over heads keeps each head's gradient independent of H.
        losses.mean().backward()
        if freeze_last:
            for p in self.student.last_layer():
                p.grad = None
        self.optimizer.step()
        with torch.no_grad():
            m = cfg.teacher_momentum if momentum is None else momentum
            for t, s in zip(self.teacher.parameters(), self.student.parameters()):
                t.mul_(m).add_(s.detach(), alpha=1 - m)
        return losses.detach()

    @torch.no_grad()
    def assign(self, data: torch.Tensor, head: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The most and second most likely cluster of every sample under the teacher's head
        ``head``, and the mean of its largest probability (at the teacher temperature)."""
        # Rows per block: the head's hidden activations and logits within the memory budget.
        width = self.cfg.hidden_dim + self.cfg.bottleneck_dim + self.cfg.num_clusters
        rows = rows_within(self.budget_bytes, 4 * 3 * width, len(data))
        top2, max_prob = [], 0.0
        for i in range(0, len(data), rows):
            logits = self.teacher(data[i : i + rows], head=head)[0]
            top2.append(logits.topk(2, dim=1).indices.cpu())
            probs = F.softmax(logits / self.cfg.teacher_temp, dim=1)
            max_prob += float(probs.max(dim=1).values.double().sum())
        top2 = torch.cat(top2).numpy().astype(np.int64)
        return top2[:, 0], top2[:, 1], max_prob / len(data)

    def fit(self, data: torch.Tensor, neighbors: torch.Tensor) -> ClusterResult:
        cfg = self.cfg
        n = len(data)
        batch = min(cfg.batch_size, n)
        steps = n // batch
        schedule = lr_schedule(cfg, steps, batch)
        momenta = momentum_schedule(cfg, steps)
        history = np.zeros((cfg.epochs, cfg.heads))
        k = neighbors.shape[1]
        start = time.perf_counter()
        for epoch in range(cfg.epochs):
            # Random draws come from one CPU generator, so CPU runs are reproducible.
            order = torch.randperm(n, generator=self.generator).to(self.device)
            pick = torch.randint(k, (n,), generator=self.generator).to(self.device)
            total = torch.zeros(cfg.heads, device=self.device)
            for s in range(steps):
                idx = order[s * batch : (s + 1) * batch]
                partner = neighbors[idx, pick[idx]]
                it = epoch * steps + s
                total += self.step(
                    data[idx],
                    data[partner],
                    float(schedule[it]),
                    epoch < cfg.freeze_last_layer_epochs,
                    float(momenta[it]),
                )
            history[epoch] = (total / steps).cpu().numpy()
            if not np.all(np.isfinite(history[epoch])):
                raise FloatingPointError(
                    f"temi: loss became non-finite in epoch {epoch + 1}; lower lr or raise the "
                    "temperatures"
                )
            best = int(np.argmin(history[epoch]))
            log.info(
                "temi epoch %d/%d: mean loss %.4f, best head %d (loss %.4f, %.2fx uniform), "
                "lr %.2e, %.1fs",
                epoch + 1,
                cfg.epochs,
                history[epoch].mean(),
                best,
                history[epoch][best],
                history[epoch][best] / uniform_temi_loss(cfg.num_clusters, cfg.beta),
                schedule[(epoch + 1) * steps - 1],
                time.perf_counter() - start,
            )
        best = int(np.argmin(history[-1]))
        assignments, second, max_prob = self.assign(data, best)
        seconds = time.perf_counter() - start
        health = clustering_health(
            assignments,
            cfg.num_clusters,
            best_head_loss=float(history[-1][best]),
            beta=cfg.beta,
            teacher_max_prob=max_prob,
            epochs=cfg.epochs,
            warmup_epochs=cfg.warmup_epochs,
        )
        log.info(
            "temi: best head %d (loss %.4g, uniform level %.4g), %d non-empty clusters of %d, "
            "teacher max probability %.3f (uniform %.3g), %.1fs",
            best,
            health["best_head_loss"],
            health["uniform_loss"],
            health["nonempty_clusters"],
            cfg.num_clusters,
            max_prob,
            1 / cfg.num_clusters,
            seconds,
        )
        for message in health["messages"]:
            log.warning("temi: %s", message)
        return ClusterResult(
            assignments=assignments,
            num_clusters=cfg.num_clusters,
            clusterer="temi",
            head_losses=history[-1],
            best_head=best,
            params=dataclasses.asdict(cfg),
            seed=cfg.seed,
            loss_history=history,
            attrs={
                "device": str(self.device),
                "train_seconds": seconds,
                "steps_per_epoch": steps,
                "effective_batch_size": batch,
                "peak_lr": cfg.peak_lr(batch),
                "num_nonempty_clusters": health["nonempty_clusters"],
            },
            health=health,
            second_assignments=second,
        )


def fit_temi(
    embeddings: np.ndarray,
    num_clusters: int,
    params: Mapping[str, Any] | TEMIConfig | None = None,
    *,
    neighbors: Neighbors | np.ndarray | None = None,
    device: str | torch.device | None = None,
    budget_bytes: int | None = None,
    copy: bool = True,
) -> ClusterResult:
    """Train TEMI heads on ``embeddings`` [N, D] and assign every sample to a cluster.

    ``neighbors`` is the cached kNN graph (``Neighbors`` or an index array [N, ≥k]); its
    first ``knn`` columns are used. Without it the graph is computed here (within
    ``budget_bytes``). ``copy=False`` lets the heads' input be prepared in place
    (``embeddings`` is overwritten; saves a copy of the data).
    """
    if isinstance(params, TEMIConfig):
        cfg = dataclasses.replace(params, num_clusters=int(num_clusters))
    else:
        cfg = config_from_params(TEMIConfig, num_clusters, params or {}, "temi")
    x = np.asarray(embeddings)
    if x.ndim != 2 or len(x) < 2:
        raise ClusterConfigError(f"temi needs embeddings [N >= 2, D], got shape {x.shape}")
    if len(x) < cfg.num_clusters:
        raise TooManyClusters("temi", cfg.num_clusters, len(x))
    dev = pick_device(device)
    if neighbors is None:
        search = catalog.clusterer("temi").knn_search(dataclasses.asdict(cfg))
        search = dataclasses.replace(search, k=min(cfg.knn, len(x) - 1))
        log.info("temi: computing the %d-NN graph (%s) of %d samples", search.k, search.index,
                 len(x))  # fmt: skip
        neighbors = search_knn(x, search, device=dev, budget_bytes=budget_bytes)
    idx = neighbors.indices if isinstance(neighbors, Neighbors) else np.asarray(neighbors)
    if idx.ndim != 2 or len(idx) != len(x):
        raise ClusterConfigError(
            f"temi: kNN indices {idx.shape} do not match {len(x)} embeddings; the kNN file was "
            "computed from another dataset"
        )
    if idx.shape[1] < min(cfg.knn, len(x) - 1):
        raise ClusterConfigError(
            f"temi: knn={cfg.knn} but the kNN graph holds only {idx.shape[1]} neighbours"
        )
    idx = idx[:, : cfg.knn]
    data = torch.from_numpy(prepare_embeddings(x, cfg.zscore, cfg.l2_normalize, copy)).to(dev)
    graph = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)).to(dev)
    log.info(
        "temi: N=%d D=%d C=%d heads=%d knn=%d epochs=%d (warm-up %d) batch=%d input %s on %s",
        len(x),
        x.shape[1],
        cfg.num_clusters,
        cfg.heads,
        cfg.knn,
        cfg.epochs,
        cfg.warmup_epochs,
        min(cfg.batch_size, len(x)),
        "+".join(n for n, on in (("z-scored", cfg.zscore), ("L2", cfg.l2_normalize)) if on)
        or "raw",
        dev,
    )
    if cfg.warmup_epochs >= cfg.epochs:
        log.warning(
            "temi: warmup_epochs=%d >= epochs=%d: the whole run is learning-rate warm-up",
            cfg.warmup_epochs,
            cfg.epochs,
        )
    if math.prod((cfg.heads, 2 * cfg.batch_size, cfg.num_clusters)) > 2**31:
        log.warning("temi: logits of one batch hold more than 2^31 values; lower batch_size")
    return TEMITrainer(cfg, x.shape[1], dev, budget_bytes).fit(data, graph)
