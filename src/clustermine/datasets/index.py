"""A dataset's index: the relative paths of its images, their labels and class names, and its
root; encoding jobs read rows of it, one shard each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .tar_shards import tar_starts


@dataclass
class DatasetIndex:
    root: str
    paths: list[str]
    labels: np.ndarray
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def shard(self, shard: int, num_shards: int) -> tuple[int, int]:
        """Row range [start, stop) of one shard: contiguous, sizes differing by at most one;
        for tar shards whole tars (consecutive ones) when there are at least as many tars as
        shards, so that each encoding job reads its own tars."""
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} out of range for {num_shards} shards")
        n = len(self)
        if self.params.get("type") == "webdataset":
            starts = tar_starts(self.paths)
            if len(starts) >= num_shards:
                bounds = [*starts, n]
                t = len(starts)
                return bounds[shard * t // num_shards], bounds[(shard + 1) * t // num_shards]
        return shard * n // num_shards, (shard + 1) * n // num_shards


def subsample(index: DatasetIndex, limit: int | None, seed: int) -> DatasetIndex:
    """Seeded subsample of ``limit`` items, kept in their original order."""
    if not limit or limit >= len(index):
        return index
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(index), size=int(limit), replace=False))
    params = {**index.params, "limit": int(limit), "subsample_seed": int(seed)}
    return DatasetIndex(
        index.root, [index.paths[i] for i in keep], index.labels[keep], index.class_names, params
    )
