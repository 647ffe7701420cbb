"""The report's gallery of one (model, ID set): what was mined, from which images, and which
images each detector gets wrong (docs/results.md, "Galleries").

Built from the files the workflow already wrote, nothing recomputed but the cluster votes:

- **clusters**: every clustering a label set of the ID set votes on, each cluster (the
  largest :data:`MAX_CLUSTERS`) as a few of its ID-train images (a seeded sample) with its
  voted name (the majority zero-shot label of its members, ClusterMine's vote), the vote share,
  its purity against the ground truth where the images have labels, and the marks *merged*
  (another cluster voted the same name) and *dropped by <label set>* (a label set on this
  clustering left the voted name out, as GradNorm does);
- **label sets**: each mined positive (the most voted :data:`MAX_POSITIVES`) with the clusters
  that voted for it and its images (the ID-train images whose zero-shot name it is, within
  the voting clusters, most similar first; for a ground-truth positive, images of the class),
  and its nearest ground-truth name by text cosine;
- **errors**: per method and (ID test set, benchmark), the OOD images accepted with the
  highest scores, and per ID test set the ID images rejected with the lowest (per pair for a
  score that adapts at test time), each with the nearest positive and negative label among
  those its score uses.

Every count shown is capped (constants below), so a gallery stays a few MB at any N and C.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from clustermine.cluster_analysis import majority_vote
from clustermine.gallery_errors import error_sections
from clustermine.gallery_parts import (
    CLUSTER_IMAGES,
    ERROR_IMAGES,
    MAX_CLUSTERS,
    MAX_POSITIVES,
    POSITIVE_IMAGES,
    Card,
    GallerySources,
    Section,
    Tile,
    class_label,
    tiles,
    true_caption,
)
from clustermine.image_rows import ImageRows, open_image_rows
from clustermine.thumbnails import ImageRoot, ThumbnailStore

log = logging.getLogger(__name__)

__all__ = ["Card", "Gallery", "GallerySources", "Section", "Tile", "build_gallery", "settings",
           "sources_from"]  # fmt: skip


@dataclass
class Gallery:
    model: str
    idset: str
    sections: list[Section]
    css: str
    thumbnails: int
    settings: dict[str, Any]


def settings() -> dict[str, int]:
    return {
        "max_clusters": MAX_CLUSTERS,
        "cluster_images": CLUSTER_IMAGES,
        "max_positives": MAX_POSITIVES,
        "positive_images": POSITIVE_IMAGES,
        "error_images": ERROR_IMAGES,
    }


class _Train:
    """What the sections need of the ID-train images: labels, class names, zero-shot top-1."""

    def __init__(self, rows: ImageRows, sources: GallerySources):
        from clustermine.h5io import read_text_embeddings
        from clustermine.zeroshot import read_zero_shot

        self.rows, self.dataset = rows, sources.train
        self.labels = rows.labels
        self.class_names = rows.class_names
        self.corpus = read_text_embeddings(sources.text)
        self.class_text = (
            read_text_embeddings(sources.classes) if sources.classes is not None else None
        )
        self.top1 = self.top1_sim = None
        if sources.zero_shot is not None:
            zs = read_zero_shot(sources.zero_shot, top1_only=True)
            if len(zs.indices) != len(rows):
                raise ValueError(
                    f"{sources.zero_shot}: {len(zs.indices)} rows, but the ID-train file "
                    f"{rows.embeddings.path} has {len(rows)}; delete the zero-shot file so that "
                    "it is recomputed"
                )
            self.top1, self.top1_sim = zs.indices[:, 0], zs.sims[:, 0]

    def name(self, i: int) -> str:
        return self.corpus.names[int(i)]

    def tiles(self, store: ThumbnailStore, rows: Sequence[int], captions=None) -> list[Tile]:
        return tiles(store, self.dataset, self.rows, rows, captions)


def build_gallery(sources: GallerySources) -> Gallery:
    store = ThumbnailStore(sources.roots)
    with contextlib.ExitStack() as stack:
        stack.callback(store.close)
        train = _Train(stack.enter_context(open_image_rows(sources.images[sources.train])),
                       sources)  # fmt: skip
        positives = _positives(sources, train)
        clusterings = _read_clusterings(sources, train)
        sections = clustering_sections(sources, train, store, positives, clusterings)
        sections += label_set_sections(sources, train, store, positives, clusterings)
        sections += error_sections(sources, store, stack)
    return Gallery(
        sources.model, sources.idset, sections, store.css(), len(store),
        {**settings(), "seed": sources.seed},
    )  # fmt: skip


@dataclass
class _Clustering:
    """A cluster file read once: its assignments, ClusterMine's vote of every non-empty
    cluster (cluster -> (name index, vote share)), the clusters that voted for each name, and
    the majority true class of every cluster with labelled images (cluster -> (class, share))."""

    name: str
    clusterer: str
    num_clusters: int
    assign: np.ndarray
    voted: dict[int, tuple[int, float]]
    by_name: dict[int, list[int]]
    purity: dict[int, tuple[int, float]]


def _read_clusterings(sources: GallerySources, train: _Train) -> dict[str, _Clustering]:
    from clustermine.clustering.io import read_clusters

    out = {}
    for name, path in sources.clusterings.items():
        result = read_clusters(path)
        assign = np.asarray(result.assignments, np.int64)
        if len(assign) != len(train.rows):
            raise ValueError(
                f"{path}: {len(assign)} assignments, but the ID-train file has "
                f"{len(train.rows)} rows; delete the cluster file so that it is remade"
            )
        voted, by_name = {}, {}
        if train.top1 is not None:
            cluster, label, count, size = majority_vote(assign, train.top1)
            for c, n, share in zip(cluster.tolist(), label.tolist(), (count / size).tolist()):
                voted[c] = (n, share)
                by_name.setdefault(n, []).append(c)
        labelled = train.labels >= 0
        cluster, label, count, size = majority_vote(assign[labelled], train.labels[labelled])
        purity = {c: (k, share) for c, k, share in
                  zip(cluster.tolist(), label.tolist(), (count / size).tolist())}  # fmt: skip
        out[name] = _Clustering(name, result.clusterer, int(result.num_clusters), assign,
                                voted, by_name, purity)  # fmt: skip
    return out


def _positives(sources: GallerySources, train: _Train) -> dict[str, list[dict[str, str]]]:
    """The positive rows of every label set, each file read once, each row's name checked
    against the text file its index points into (a label set of another corpus would show
    other names' images)."""
    from clustermine.labelsets import positive_rows

    names = {"corpus": train.corpus.names, "classes": train.class_text.names
             if train.class_text is not None else train.class_names or []}  # fmt: skip
    out = {}
    for slug, (tsv, _) in sources.label_sets.items():
        out[slug] = positive_rows(tsv)
        for row in out[slug]:
            known = names.get(row["source"], [])
            i = int(row["index"])
            if not 0 <= i < len(known) or known[i] != row["name"]:
                raise ValueError(
                    f"{tsv}: positive {row['name']!r} ({row['source']} row {i}) is not that "
                    "row of the gallery's text files; the label set was mined from other text "
                    "embeddings: rerun its mining"
                )
    return out


def _dropped_by(sources: GallerySources, positives, clustering: str) -> dict[str, set[str]]:
    """Positive names of each label set that votes on ``clustering``."""
    return {
        slug: {row["name"] for row in positives[slug]}
        for slug, (_, on) in sources.label_sets.items()
        if on == clustering
    }


def clustering_sections(
    sources: GallerySources, train: _Train, store, positives, clusterings
) -> list[Section]:
    rng_seed = sources.seed
    sections = []
    for name, cl in clusterings.items():
        sizes = np.bincount(cl.assign[cl.assign >= 0], minlength=cl.num_clusters)
        kept = _dropped_by(sources, positives, name)
        rng = np.random.default_rng(rng_seed)
        cards = []
        order = np.argsort(-sizes, kind="stable")
        for c in order[:MAX_CLUSTERS]:
            c = int(c)
            members = np.flatnonzero(cl.assign == c)
            if not len(members):
                continue
            facts = [f"{len(members):,} images"]
            marks, title = [], f"cluster {c}"
            if c in cl.voted:
                n, share = cl.voted[c]
                title = f"cluster {c}: {train.name(n)}"
                facts.append(f"vote share {share:.0%}")
                others = [o for o in cl.by_name[n] if o != c]
                if others:
                    marks.append("merged with cluster " + ", ".join(map(str, others[:8])))
                for slug, names in kept.items():
                    if train.name(n) not in names:
                        marks.append(f"dropped by {slug}")
            if c in cl.purity:
                top, share = cl.purity[c]
                facts.append(f"purity {share:.0%} ({class_label(train.rows, top)})")
            shown = np.sort(rng.choice(members, min(CLUSTER_IMAGES, len(members)), replace=False))
            captions = [true_caption(train.rows, r) for r in shown]
            cards.append(Card(title, facts, train.tiles(store, shown, captions), marks))
        empty = int((sizes == 0).sum())
        summary = (
            f"{cl.clusterer}, C = {cl.num_clusters}: {len(cl.voted)} clusters voted for "
            f"{len(cl.by_name)} names; {empty} empty. "
            + (f"The {MAX_CLUSTERS} largest clusters are shown. " if cl.num_clusters
               > MAX_CLUSTERS else "")  # fmt: skip
            + f"{CLUSTER_IMAGES} images each, drawn with seed {rng_seed}."
        )
        sections.append(Section("clusters", f"Clusters: {name}", summary, cards))
    return sections


def _nearest_gt(train: _Train, corpus_row: int) -> str | None:
    from clustermine.h5io import normalize

    if train.class_text is None or not len(train.class_text.names):
        return None
    sims = normalize(train.class_text.embeddings) @ normalize(
        train.corpus.embeddings[corpus_row : corpus_row + 1]
    ).T
    best = int(np.argmax(sims[:, 0]))
    return f"nearest true name: {train.class_text.names[best]} (cos {sims[best, 0]:.2f})"


def label_set_sections(
    sources: GallerySources, train: _Train, store, positives, clusterings
) -> list[Section]:
    sections, seen = [], {}
    for slug, (_, clustering) in sources.label_sets.items():
        pos = positives[slug]
        # Shown once: the same positives voted on the same clustering (or on none).
        key = (clustering, tuple((row["source"], row["name"]) for row in pos))
        if key in seen:
            same = f"The same {len(pos)} positives as {seen[key]}."
            sections.append(Section("labels", f"Label set: {slug}", same, []))
            continue
        seen[key] = slug
        assign = voted_by = None
        if clustering is not None and train.top1 is not None:
            assign, voted_by = clusterings[clustering].assign, clusterings[clustering].by_name
        votes = np.array([int(row["votes"]) if row["votes"] else -1 for row in pos], np.int64)
        order = np.argsort(-votes, kind="stable")[:MAX_POSITIVES]
        cards = []
        for i in order:
            row = pos[int(i)]
            index, facts = int(row["index"]), []
            if row["source"] == "classes":
                rows = np.flatnonzero(train.labels == index)[:POSITIVE_IMAGES]
                facts.append("a true class name (Y_GT)")
            else:
                rows = _named_images(train, index, assign, voted_by)
                if votes[i] >= 0:
                    facts.append(f"{int(votes[i])} votes")
                if voted_by is not None:
                    clusters = voted_by.get(index, [])
                    facts.append("voted by cluster " + ", ".join(map(str, clusters[:12]))
                                 if clusters else "no cluster voted for it")  # fmt: skip
                nearest = _nearest_gt(train, index)
                if nearest:
                    facts.append(nearest)
            captions = [true_caption(train.rows, r) for r in rows]
            cards.append(Card(str(row["name"]), facts, train.tiles(store, rows, captions)))
        summary = f"{len(pos)} positives" + (
            f"; the {MAX_POSITIVES} most voted are shown" if len(pos) > MAX_POSITIVES else ""
        ) + (f"; votes of clustering {clustering}" if clustering else "") + "."
        sections.append(Section("labels", f"Label set: {slug}", summary, cards))
    return sections


def _named_images(train: _Train, index: int, assign, voted_by) -> np.ndarray:
    """ID-train images whose zero-shot name is corpus row ``index`` (within the clusters that
    voted for it, when there are any), most similar first."""
    if train.top1 is None:
        return np.zeros(0, np.int64)
    rows = np.flatnonzero(train.top1 == index)
    if assign is not None and voted_by and voted_by.get(index):
        inside = rows[np.isin(assign[rows], voted_by[index])]
        rows = inside if len(inside) else rows
    best = np.argsort(-train.top1_sim[rows], kind="stable")[:POSITIVE_IMAGES]
    return rows[best]


def sources_from(plan: Mapping[str, Any], local: Mapping[str, str] | None = None) -> GallerySources:
    """The gallery's sources from the plan the workflow gives the job (its params). ``local``
    maps each file of the plan to the path the job reads it at (Snakemake's inputs, which
    differ from the plan's paths where inputs are staged to node-local storage)."""
    local = dict(local or {})

    def at(path):
        return None if path is None else local.get(str(path), path)

    roots = {
        ds: (ImageRoot.from_index(at(index)) if index else None)
        for ds, index in plan["indexes"].items()
    }
    return GallerySources(
        model=plan["model"], idset=plan["idset"], train=plan["train"],
        tests=list(plan["tests"]), benchmarks=list(plan["benchmarks"]),
        images={ds: at(p) for ds, p in plan["images"].items()}, roots=roots,
        text=at(plan["text"]), zero_shot=at(plan.get("zero_shot")),
        classes=at(plan.get("classes")),
        clusterings={k: at(p) for k, p in plan["clusterings"].items()},
        label_sets={k: (at(v[0]), v[1]) for k, v in plan["label_sets"].items()},
        methods={k: (at(v[0]), at(v[1])) for k, v in plan["methods"].items()},
        seed=int(plan.get("seed", 0)),
    )  # fmt: skip
