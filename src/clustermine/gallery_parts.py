"""What a gallery (clustermine.gallery) is made of: its sources, its sections of cards of
tiles, and the caps that keep a page a few MB at any N and C."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from clustermine.image_rows import ImageRows
from clustermine.thumbnails import ImageRoot, ThumbnailStore

PathLike = str | os.PathLike

MAX_CLUSTERS = 60
CLUSTER_IMAGES = 6
MAX_POSITIVES = 60
POSITIVE_IMAGES = 6
ERROR_IMAGES = 6


@dataclass
class Tile:
    """One image: its thumbnail's CSS class (None: see ``problem``), path and caption lines."""

    css: str | None
    path: str
    caption: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass
class Card:
    """A titled group of tiles (a cluster, a positive) with its facts and marks."""

    title: str
    facts: list[str]
    tiles: list[Tile]
    marks: list[str] = field(default_factory=list)


@dataclass
class Section:
    kind: str  # "clusters", "labels" or "errors"
    title: str
    summary: str
    cards: list[Card]


@dataclass
class GallerySources:
    """The files of one (model, ID set) gallery. ``images``/``roots``: per dataset, its
    embedding file and its image root (None for a dataset given as embeddings);
    ``clusterings``: name -> cluster file; ``label_sets``: slug -> (label TSV, clustering name
    or None); ``methods``: slug -> (detector file, score file)."""

    model: str
    idset: str
    train: str
    tests: list[str]
    benchmarks: list[str]
    images: dict[str, PathLike]
    roots: dict[str, ImageRoot | None]
    text: PathLike
    zero_shot: PathLike | None = None
    classes: PathLike | None = None
    clusterings: dict[str, PathLike] = field(default_factory=dict)
    label_sets: dict[str, tuple[PathLike, str | None]] = field(default_factory=dict)
    methods: dict[str, tuple[PathLike, PathLike]] = field(default_factory=dict)
    seed: int = 0


def tiles(
    store: ThumbnailStore, dataset: str, rows: ImageRows, picked, captions=None
) -> list[Tile]:
    """A tile per picked row of ``rows`` (an open image file of ``dataset``), captioned."""
    picked = [int(r) for r in picked]
    paths = rows.paths_at(picked) if picked else []
    out = []
    for j, path in enumerate(paths):
        thumb = store.get(dataset, path)
        out.append(Tile(thumb.css, path, list(captions[j]) if captions else [], thumb.problem))
    return out


def class_label(rows: ImageRows, label: int) -> str:
    """The name of class ``label`` of an image file (its number where the file names none)."""
    names = rows.class_names
    return names[label] if names and 0 <= label < len(names) else str(label)


def true_caption(rows: ImageRows, row: int) -> list[str]:
    """The caption line of an image's ground-truth class; none for an unlabelled image."""
    label = int(rows.labels[row])
    return [f"true: {class_label(rows, label)}"] if label >= 0 else []
