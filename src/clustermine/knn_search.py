"""How a kNN graph file is searched, and the name that file carries (no heavy imports: the
Snakefile reads it at parse time).

A clusterer that trains on a kNN graph (TEMI) declares its k (parameter of role ``knn_k``)
and its search (roles ``knn_index``, ``knn_nlist``, ``knn_nprobe``). The graph file is
``results/{model}/knn/{dataset}.{graph}.h5`` with ``graph`` = :attr:`KnnSearch.name`:
``k50`` for the exact search (the name every earlier version gave it) and
``k50.ivf-nlistauto-nprobe16`` for a faiss IVF index, so that clusterers with the same
search share one file and an exact and an approximate graph can be compared side by side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INDEXES = ("exact", "ivf")
# The graph part of a kNN file name (the wildcard's constraint in the workflow, and what
# KnnSearch.parse reads: its groups are k, nlist and nprobe).
GRAPH_PATTERN = r"k([1-9][0-9]*)(?:\.ivf-nlist(auto|[1-9][0-9]*)-nprobe([1-9][0-9]*))?"
# Queries of the recall estimate of an approximate graph (seeded sample; recorded in the file).
RECALL_QUERIES = 1000
# Seed of the IVF cells' k-means and of the recall sample: fixed, as one graph file serves
# every clusterer with the same search (recorded in the file).
IVF_SEED = 0


@dataclass(frozen=True)
class KnnSearch:
    """k and the search of a kNN graph. ``index``: exact (brute force) or ivf (faiss
    IndexIVFFlat: ``nlist`` cells, None for 4·√N, each query searching its ``nprobe``
    nearest cells)."""

    k: int
    index: str = "exact"
    nlist: int | None = None
    nprobe: int = 16

    def __post_init__(self) -> None:
        if self.index not in INDEXES:
            raise ValueError(f"kNN index must be one of {INDEXES}, got {self.index!r}")
        for key in ("k", "nprobe") + (("nlist",) if self.nlist is not None else ()):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"kNN {key} must be a positive integer, got {value!r}")
        if self.index == "exact":  # the IVF settings do not apply: one exact graph per k
            object.__setattr__(self, "nlist", None)
            object.__setattr__(self, "nprobe", KnnSearch.nprobe)

    @property
    def name(self) -> str:
        if self.index == "exact":
            return f"k{self.k}"
        return f"k{self.k}.ivf-nlist{self.nlist or 'auto'}-nprobe{self.nprobe}"

    @classmethod
    def parse(cls, name: str) -> "KnnSearch":
        """The search a graph name (``wildcards.graph``) stands for."""
        match = re.fullmatch(GRAPH_PATTERN, name)
        if match is None:
            raise ValueError(
                f"{name!r} is not a kNN graph name (k<k> or k<k>.ivf-nlist<n|auto>-nprobe<p>)"
            )
        k, nlist, nprobe = match.groups()
        if nprobe is None:
            return cls(int(k))
        return cls(int(k), "ivf", None if nlist == "auto" else int(nlist), int(nprobe))
