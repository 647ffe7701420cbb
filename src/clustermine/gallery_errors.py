"""The error sections of a gallery: per method, the OOD images it accepts with the highest
scores and the ID test images it rejects with the lowest, with the labels its score uses."""

from __future__ import annotations

import numpy as np

from clustermine.gallery_parts import (
    ERROR_IMAGES,
    Card,
    GallerySources,
    Section,
    tiles,
    true_caption,
)
from clustermine.image_rows import ImageRows, open_image_rows


def error_sections(sources: GallerySources, store, stack) -> list[Section]:
    from clustermine.detectors.registry import read_detector_texts

    opened: dict[str, ImageRows] = {}

    def rows_of(dataset: str) -> ImageRows:
        if dataset not in opened:
            opened[dataset] = stack.enter_context(open_image_rows(sources.images[dataset]))
        return opened[dataset]

    sections = []
    for method, (detector_path, scores_path) in sources.methods.items():
        score, *texts = read_detector_texts(detector_path)
        sides = _error_sides(sources, scores_path, rows_of)
        names = _names_of_picks(texts, sides, rows_of)
        cards = []
        for title, dataset, scores, picked, what in sides:
            rows = rows_of(dataset)
            captions = [
                [f"score {scores[r]:.4g}", *true_caption(rows, r), *names[dataset][int(r)]]
                for r in picked
            ]
            cards.append(Card(title, [what], tiles(store, dataset, rows_of(dataset), picked,
                                                    captions)))  # fmt: skip
        sections.append(
            Section("errors", f"Errors: {method}",
                    f"score {score}; higher = more in-distribution.", cards)  # fmt: skip
        )
    return sections


def _error_sides(sources: GallerySources, scores_path, rows_of) -> list[tuple]:
    """(title, dataset, scores, picked rows, what) of every card of a method: per (ID test set,
    benchmark) the OOD images with the highest scores; per ID test set the ID images with the
    lowest, once (per pair for a score that adapts at test time: its stream's scores)."""
    from clustermine.score_files import read_pair

    sides, shown = [], set()
    for test in sources.tests:
        for bench in sources.benchmarks:
            id_set, ood_set = read_pair(scores_path, test, bench)
            for dataset, scores in ((bench, ood_set.scores), (test, id_set.scores)):
                if len(scores) != len(rows_of(dataset)):
                    raise ValueError(
                        f"{scores_path}: {len(scores)} scores of {dataset}, but its image file "
                        f"{rows_of(dataset).embeddings.path} has {len(rows_of(dataset))} rows; "
                        "delete the score file so that it is scored again"
                    )
                if not np.isfinite(scores).all():
                    # NaN sorts last either way: the worst images would be silently skipped.
                    raise ValueError(
                        f"{scores_path}: {int((~np.isfinite(scores)).sum())} scores of "
                        f"{dataset} are NaN or infinite; delete the score file so that it is "
                        "scored again"
                    )
            accepted = np.argsort(-ood_set.scores, kind="stable")[:ERROR_IMAGES]
            sides.append((f"OOD accepted: {bench} (against {test})", bench, ood_set.scores,
                          accepted, f"the {bench} images with the highest scores"))  # fmt: skip
            stream = "stream_seed" in id_set.attrs
            if stream or test not in shown:
                shown.add(test)
                rejected = np.argsort(id_set.scores, kind="stable")[:ERROR_IMAGES]
                title = f"ID rejected: {test}" + (f" (stream with {bench})" if stream else "")
                sides.append((title, test, id_set.scores, rejected,
                              f"the {test} images with the lowest scores"))  # fmt: skip
    return sides


def _names_of_picks(texts, sides, rows_of) -> dict[str, dict[int, list[str]]]:
    """The nearest labels of every picked image of a method, each image's row read once."""
    wanted: dict[str, set[int]] = {}
    for _, dataset, _, picked, _ in sides:
        wanted.setdefault(dataset, set()).update(int(r) for r in picked)
    names = {}
    for dataset, rows in wanted.items():
        rows = sorted(rows)
        labels = _top_labels(texts, rows_of(dataset).embeddings.take(rows))
        names[dataset] = dict(zip(rows, labels))
    return names


def _top_labels(texts, embeddings: np.ndarray) -> list[list[str]]:
    """Per row, the nearest positive and negative label (by cosine; the detector's label
    texts are stored unit length), as captions."""
    from clustermine.h5io import normalize

    x = normalize(np.asarray(embeddings, np.float32))
    out = [[] for _ in range(len(x))]
    for which, label_texts in zip(("pos", "neg"), texts):
        if not len(label_texts.names) or not len(x):
            continue
        best = (x @ label_texts.embeddings.T).argmax(axis=1)
        for j, b in enumerate(best):
            out[j].append(f"{which}: {label_texts.names[int(b)]}")
    return out
