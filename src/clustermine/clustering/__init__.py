"""Clustering of image embeddings: one fit function per method, declared by name in
:mod:`clustermine.catalog.clusterers`.

Every clusterer takes the embeddings [N, D], the number of clusters C and its parameters (the
``clusterers.<slug>`` config entry without ``method``) and returns a :class:`ClusterResult`.
Methods that train on nearest-neighbour pairs (TEMI) also take a cached kNN graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from clustermine import catalog


class ClusterConfigError(ValueError):
    """A clusterer was given an unknown method or parameter, or an impossible value."""


@dataclass
class ClusterResult:
    """Cluster of every sample and how the clusterer got there.

    ``head_losses`` holds the final loss of every head (TEMI: mean loss of the last epoch; k-means:
    a single entry, the final inertia); ``best_head`` is the one whose assignments these are.
    ``loss_history`` is [epochs or iterations, heads]. ``second_assignments`` is the second most
    likely cluster of every sample where the clusterer has one (TEMI: from the teacher's best
    head), else None. ``health`` is the record of
    :func:`clustermine.cluster_analysis.clustering_health`: size statistics, what the
    clusterer reports (TEMI: loss against the uniform level, teacher confidence; k-means:
    iterations) and ``warnings`` (codes) with their ``messages``.
    """

    assignments: np.ndarray
    num_clusters: int
    clusterer: str
    head_losses: np.ndarray
    best_head: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    loss_history: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    second_assignments: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.assignments = np.asarray(self.assignments, dtype=np.int64).reshape(-1)
        self.head_losses = np.asarray(self.head_losses, dtype=np.float64).reshape(-1)
        if self.second_assignments is not None:
            self.second_assignments = np.asarray(self.second_assignments, np.int64).reshape(-1)
        self.validate()

    def validate(self) -> None:
        """Refuse assignments outside [0, C) and a best head that does not exist."""
        if not 0 <= self.best_head < max(1, len(self.head_losses)):
            raise ClusterConfigError(
                f"best head {self.best_head} outside the {len(self.head_losses)} head losses"
            )
        second = self.second_assignments
        for name, a in (("assignments", self.assignments), ("second_assignments", second)):
            if a is not None and len(a) and (a.min() < 0 or a.max() >= self.num_clusters):
                raise ClusterConfigError(
                    f"{name} must lie in [0, {self.num_clusters}), found [{a.min()}, {a.max()}]"
                )
        if second is not None and len(second) != len(self.assignments):
            raise ClusterConfigError(
                f"{len(second)} second assignments for {len(self.assignments)} samples"
            )

    @property
    def warnings(self) -> list[str]:
        """Codes of the health warnings (empty: the clustering looks healthy)."""
        return list(self.health.get("warnings") or [])

    @property
    def sizes(self) -> np.ndarray:
        """Samples per cluster [C] (empty clusters included)."""
        return np.bincount(self.assignments, minlength=self.num_clusters).astype(np.int64)

    def __len__(self) -> int:
        return len(self.assignments)


def fit_clusters(
    method: str,
    embeddings: np.ndarray,
    num_clusters: int,
    params: Mapping[str, Any] | None = None,
    *,
    neighbors=None,
    device: str | None = None,
    budget_bytes: int | None = None,
    texts=None,
    copy: bool = True,
) -> ClusterResult:
    """Cluster ``embeddings`` with the clusterer declared as ``method`` in the catalog.

    ``device``: ``None``/``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``, ...;
    ``budget_bytes`` bounds the working memory of chunked similarity blocks; ``texts``: the
    text embeddings of a label set's positives, for clusterers that need a ``label_set``;
    ``copy=False`` lets the clusterer overwrite ``embeddings`` (normalised or z-scored in
    place) instead of working on a copy: one copy of the data less, for a caller that does
    not use them afterwards.
    """
    try:
        plugin = catalog.clusterer(method)
    except catalog.CatalogError as err:
        raise ClusterConfigError(str(err)) from err
    params = {k: v for k, v in dict(params or {}).items() if k != "method"}
    extra = {"texts": texts} if plugin.has("label_set") else {}
    result = plugin.load()(
        embeddings,
        int(num_clusters),
        params,
        neighbors=neighbors,
        device=device,
        budget_bytes=budget_bytes,
        copy=copy,
        **extra,
    )
    if not result.health:  # every clustering gets at least the size check
        from clustermine.cluster_analysis import clustering_health

        result.health = clustering_health(result.assignments, result.num_clusters)
    return result


def check_config_values(config: Any, method: str) -> None:
    """Refuse a config dataclass whose values fall outside the catalog's schema fragments of
    ``method`` (the one declaration of every range and choice)."""
    try:
        for param in catalog.clusterer(method).params:
            param.check(getattr(config, param.name), method)
    except catalog.CatalogError as err:
        raise ClusterConfigError(str(err)) from err


def config_from_params(cls, num_clusters: int, params: Mapping[str, Any], method: str):
    """Build a config dataclass from the catalog's parameters of ``method`` (unknown keys are
    an error naming the accepted ones)."""
    try:
        resolved = catalog.clusterer(method).resolve(params)
    except catalog.CatalogError as err:
        raise ClusterConfigError(str(err)) from err
    return cls(num_clusters=int(num_clusters), **resolved)


__all__ = [
    "ClusterConfigError",
    "ClusterResult",
    "check_config_values",
    "config_from_params",
    "fit_clusters",
]
