"""Synthetic CLIP-like embeddings for the benchmarks (no model, no images; seeded).

The world: a corpus of names in groups of near-synonyms (each name a unit vector a little away
from its group's centre, as WordNet lemmas of one concept are close in CLIP's text space);
ID classes are names of distinct groups. An image of a class is its name's vector plus one of
a few sub-mode directions (poses, backgrounds) and noise, normalised, plus one direction shared
by every image (the modality gap), times a random norm. Zero-shot top-1 over the corpus is
right for roughly three images in four (the sibling names take most of the rest), about what
CLIP gets on ImageNet. OOD sets are drawn from other groups ("far") or from the unused
siblings of ID classes ("near").

    world = World(num_names=79_403, dim=1024, num_classes=1000)
    for x, y in world.images(world.class_concepts, per_concept_counts, seed=1): ...
    world.write_corpus("corpus.h5"); world.write_images("train.h5", counts, seed=1)
"""

from __future__ import annotations

import numpy as np

# Attributes every synthetic file carries: the workflow's model checks compare them.
MODEL_ATTRS = {
    "model_arch": "synthetic-clip",
    "model_pretrained": "synthetic",
    "random_weights": False,
    "logit_scale": 100.0,
}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class World:
    """Names, ID classes and OOD concepts of one synthetic CLIP embedding space."""

    def __init__(
        self,
        num_names: int = 79_403,
        dim: int = 1024,
        num_classes: int = 1000,
        group_size: int = 4,
        sibling: float = 0.09,
        submodes: int = 4,
        spread: float = 0.6,
        noise: float = 0.6,
        gap: float = 1.0,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.submodes, self.spread, self.noise = dim, submodes, spread, noise
        groups = -(-num_names // group_size)
        self.group = np.arange(num_names) // group_size
        centres = unit(rng.standard_normal((groups, dim), dtype=np.float32))
        offsets = unit(rng.standard_normal((num_names, dim), dtype=np.float32))
        self.texts = unit(centres[self.group] + sibling * offsets).astype(np.float32)
        self.names = [f"name {i}" for i in range(num_names)]
        # ID classes: the first name of num_classes distinct groups (the rest of each of
        # those groups are their siblings); far OOD concepts: names of the other groups.
        order = rng.permutation(groups)
        self.class_concepts = order[:num_classes] * group_size
        id_groups = set(order[:num_classes].tolist())
        self.far_concepts = np.array(
            [i for i in rng.permutation(num_names) if self.group[i] not in id_groups]
        )
        self.near_concepts = np.array(
            [i for i in rng.permutation(num_names)
             if self.group[i] in id_groups and i % group_size]  # fmt: skip
        )
        self.gap = gap * unit(rng.standard_normal(dim).astype(np.float32))
        self.seed = seed

    @property
    def class_names(self) -> list[str]:
        return [self.names[i] for i in self.class_concepts]

    def images(self, concepts: np.ndarray, counts: np.ndarray, seed: int, chunk: int = 65536):
        """Yield (embeddings float32 [n, D], concept index into ``concepts``) chunks, in a
        seeded random order, ``counts[i]`` images of ``concepts[i]``."""
        rng = np.random.default_rng([self.seed, seed])
        modes = unit(
            self.texts[concepts][:, None]
            + self.spread
            * unit(rng.standard_normal((len(concepts), self.submodes, self.dim), np.float32))
        ).astype(np.float32)
        which = rng.permutation(np.repeat(np.arange(len(concepts)), counts))
        for lo in range(0, len(which), chunk):
            y = which[lo : lo + chunk]
            s = rng.integers(self.submodes, size=len(y))
            e = unit(rng.standard_normal((len(y), self.dim), dtype=np.float32))
            x = unit(modes[y, s] + self.noise * e) + self.gap
            x *= rng.uniform(8.0, 12.0, size=(len(y), 1)).astype(np.float32)
            yield x.astype(np.float32), y

    def all_images(self, concepts: np.ndarray, counts: np.ndarray, seed: int):
        xs, ys = zip(*self.images(concepts, counts, seed))
        return np.concatenate(xs), np.concatenate(ys)

    def write_corpus(self, path, corpus: str = "synthetic") -> None:
        from clustermine.h5io import TextEmbeddings, write_text_embeddings

        write_text_embeddings(path, TextEmbeddings(
            self.texts, self.names,
            attrs={**MODEL_ATTRS, "corpus": corpus, "prompts": "none", "synthetic_seed": self.seed},
        ))  # fmt: skip

    def write_images(self, path, dataset: str, concepts, counts, seed: int,
                     labels: bool = True) -> None:  # fmt: skip
        """An image-embedding file in the project's format, written chunk by chunk (1.28M ×
        1024 never needs more than one chunk besides the file)."""
        import h5py

        from clustermine.atomic import atomic_path
        from clustermine.h5io import write_attrs

        n = int(np.sum(counts))
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            emb = f.create_dataset("embeddings", (n, self.dim), dtype=np.float32,
                                   chunks=(min(n, 4096), self.dim))  # fmt: skip
            lab = f.create_dataset("labels", (n,), dtype=np.int64)
            lo = 0
            for x, y in self.images(concepts, counts, seed):
                emb[lo : lo + len(x)] = x
                lab[lo : lo + len(x)] = y if labels else -1
                lo += len(x)
            f.create_dataset("paths", data=[f"{dataset}/{i:08d}.JPEG" for i in range(n)],
                             dtype=h5py.string_dtype())  # fmt: skip
            if labels:
                f.create_dataset("class_names", data=[self.names[c] for c in concepts],
                                 dtype=h5py.string_dtype())  # fmt: skip
            write_attrs(f, {**MODEL_ATTRS, "kind": "image", "dataset": dataset,
                            "embedding_dim": self.dim, "num_samples": n,
                            "synthetic_seed": self.seed, "unreadable_files": []})  # fmt: skip


def class_counts(num_classes: int, total: int, seed: int = 0) -> np.ndarray:
    """Images per class summing to ``total``, shaped like ImageNet train's (732 to 1300 per
    class, most at 1300)."""
    rng = np.random.default_rng(seed)
    raw = np.where(rng.random(num_classes) < 0.9, 1300, rng.integers(732, 1300, num_classes))
    counts = np.floor(raw / raw.sum() * total).astype(np.int64)
    counts[: total - counts.sum()] += 1
    return counts
