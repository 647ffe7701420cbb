"""Re-mining a deployed detector's positives from unlabeled deployment images
(``clustermine remine``, docs/deploy.md, "Re-mining").

ClusterMine needs no labels, only ID images and a corpus, so a detector whose label texts are a
corpus (its positives and negatives together: a ClusterMine or PosMine detector carries every
corpus name and text embedding) can re-derive its positives from the images it sees:

1. a held-out share of the images is set aside (seeded) to calibrate the new detector;
2. the **contamination guard** leaves out images the current detector rejects with high
   confidence (p-value at or below ``guard_p``), from mining and from the calibration;
3. the rest are clustered (k-means, C clusters), each image gets its zero-shot top-1 name over
   the corpus, and each cluster votes for its majority name (ClusterMine's vote);
4. the voted names are the new positives, a name that is not a positive yet only with at least
   ``min_support`` voting images; the rest of the corpus are the negatives;
5. a detector of the same score and parameters is fitted on them and calibrated.

The **concept diff** lists every name that is or was a positive: added, removed or kept, with
the images and clusters that voted for it and a few of their paths. A person reviews it and
applies an edited copy (:func:`apply_diff`), since deployment images are not guaranteed clean.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clustermine.atomic import atomic_path
from clustermine.h5io import TextEmbeddings, normalize
from clustermine.staging import recorded_path

log = logging.getLogger(__name__)

DIFF_COLUMNS = ("name", "change", "images", "clusters", "examples")
KEPT_CHANGES = ("added", "kept")  # rows of a diff that make positives when applied


class RemineError(ValueError):
    """A detector that cannot be re-mined, settings out of range, or a diff that cannot be
    applied."""


@dataclass
class RemineSettings:
    """``clusters``: C (None: twice the detector's positives, at most one per 10 images mined);
    ``holdout``: share of images that calibrate the new detector; ``guard_p``: images with a
    p-value at or below it under the current detector are left out (None: no guard);
    ``min_support``: images a name that is not a positive yet needs to enter; ``seed``."""

    clusters: int | None = None
    holdout: float = 0.2
    guard_p: float | None = 0.01
    min_support: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise RemineError(f"remine: holdout must be a share in (0, 1), got {self.holdout}")
        if self.guard_p is not None and not 0.0 <= self.guard_p < 1.0:
            raise RemineError(f"remine: guard_p must be in [0, 1), got {self.guard_p}")
        if self.min_support < 1:
            raise RemineError(f"remine: min_support must be at least 1, got {self.min_support}")
        if self.clusters is not None and self.clusters < 1:
            raise RemineError(f"remine: clusters must be at least 1, got {self.clusters}")


@dataclass
class Concept:
    """One row of the concept diff."""

    name: str
    change: str  # added, removed, kept
    images: int = 0  # images voting for it (their cluster's majority name is it)
    clusters: int = 0  # clusters voting for it
    examples: list[str] = field(default_factory=list)


@dataclass
class Remined:
    """A re-mined detector, its concept diff, and what made it."""

    detector: Any
    diff: list[Concept]
    record: dict[str, Any]


def corpus_of(detector) -> TextEmbeddings:
    """The corpus of a detector: its positives, then its negatives; a RemineError where
    re-mining makes no sense."""
    from clustermine import catalog

    plugin = detector.plugin()
    extra = sorted(plugin.needs - catalog.LABEL_TEXT_NEEDS)
    if extra:
        raise RemineError(
            f"score {detector.name!r} also needs {', '.join(extra)}, which deployment images "
            "do not give (re-mining refits positives and negatives only): re-mine a "
            "detector of a score of the label texts alone (eq1, mcm, maxlogit, energy, ...)"
        )
    if not len(detector.text_neg.names):
        raise RemineError(
            f"score {detector.name!r}: the detector's label texts are its positives alone, "
            "no corpus to mine from: re-mine a detector whose negatives are corpus names "
            "(a ClusterMine, PosMine or NegLabel label set)"
        )
    names = [*detector.text_pos.names, *detector.text_neg.names]
    emb = np.concatenate([detector.text_pos.embeddings, detector.text_neg.embeddings])
    return TextEmbeddings(emb, names)


def remine(
    old,
    embeddings: np.ndarray,
    paths: Sequence[str],
    settings: RemineSettings = RemineSettings(),
    positives: Sequence[str] | None = None,
    *,
    acceptance: float = 0.95,
    source: str = "",
) -> Remined:
    """Re-mine the positives of the fitted detector ``old`` (``source`` names it) from the
    image ``embeddings`` [N, D] of deployment images named ``paths``; with ``positives`` (an
    applied diff) those names are the new positives instead of the vote's. ``acceptance``:
    the share of held-out ID images the thresholds accept (the old one's for its guard-free
    count of accepted images, the new one's likewise)."""
    from clustermine.cluster_analysis import majority_vote
    from clustermine.clustering.kmeans import fit_kmeans
    from clustermine.zeroshot import zero_shot_top1

    corpus = corpus_of(old)
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(paths):
        raise RemineError(f"remine: {len(paths)} paths for embeddings of shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise RemineError(
            f"remine: {len(bad)} of {len(x)} image embeddings have NaN or infinite values (a "
            f"damaged model or file): {[str(paths[i]) for i in bad[:5]]}; leave them out"
        )
    rng = np.random.default_rng(settings.seed)
    held = np.zeros(len(x), bool)
    held[rng.permutation(len(x))[: int(round(settings.holdout * len(x)))]] = True
    scores_old = old.score(x)
    guarded = np.zeros(len(x), bool)
    old_accepts = None
    if old.calibration is not None:
        old_accepts = int((scores_old >= old.calibration.threshold(acceptance)).sum())
        if settings.guard_p is not None:
            guarded = old.calibration.p_values(scores_old) <= settings.guard_p
    mine, calib = ~held & ~guarded, held & ~guarded
    if mine.sum() < 2 or calib.sum() < 1:
        raise RemineError(
            f"remine: {int(mine.sum())} images left to mine and {int(calib.sum())} to calibrate "
            f"(of {len(x)}; {int(guarded.sum())} left out by the guard at p <= "
            f"{settings.guard_p}): give more deployment images, or loosen the guard"
        )
    old_pos = list(old.text_pos.names)
    c = settings.clusters or max(1, min(2 * len(old_pos), int(mine.sum()) // 10))
    c = min(c, int(mine.sum()))
    top1 = zero_shot_top1(normalize(x[mine]), normalize(corpus.embeddings),
                          device=old.device)  # fmt: skip
    assign = fit_kmeans(x[mine], c, {"seed": settings.seed}, device=old.device).assignments
    cluster, label, majority, _ = majority_vote(assign, top1)
    mined_paths = np.asarray(paths, dtype=object)[mine]
    votes: dict[str, Concept] = {}
    for k, name_index, count in zip(cluster, label, majority):
        name = corpus.names[int(name_index)]
        concept = votes.setdefault(name, Concept(name, ""))
        concept.images += int(count)
        concept.clusters += 1
        members = np.flatnonzero((assign == k) & (top1 == name_index))
        concept.examples += [str(p) for p in mined_paths[members[: 3 - len(concept.examples)]]]
    diff = concept_diff(old_pos, votes, settings.min_support)
    if positives is None:
        positives = [c.name for c in diff if c.change in KEPT_CHANGES]
    new = refit(old, corpus, positives, settings)
    scores_new = new.score(x)
    new.calibrate(scores_new[calib], "deployment held-out images",
                  {"images": int(calib.sum())})  # fmt: skip
    threshold = new.calibration.threshold(acceptance)
    record = {
        "settings": asdict(settings),
        "clusters": int(c),
        "images": int(len(x)),
        "mined": int(mine.sum()),
        "held_out": int(calib.sum()),
        "left_out_by_guard": int(guarded.sum()),
        "old_accepts": old_accepts,
        "new_accepts": int((scores_new >= threshold).sum()),
        "old_positives": len(old_pos),
        "new_positives": len(positives),
        "id_acceptance": acceptance,
    }
    new.meta["remined"] = {**record, "from": source}
    log.info("re-mined %s: %s", source, record)
    return Remined(new, diff, record)


def concept_diff(old_pos: Sequence[str], votes: dict[str, Concept], min_support: int):
    """Every name that is or was a positive (and every voted one): kept, added (a new name
    with at least ``min_support`` voting images), removed; new names below the support are
    listed as ``below_support``."""
    out = []
    old = set(old_pos)
    for name in old_pos:
        concept = votes.get(name, Concept(name, ""))
        concept.change = "kept" if name in votes else "removed"
        out.append(concept)
    for name, concept in sorted(votes.items(), key=lambda kv: -kv[1].images):
        if name not in old:
            concept.change = "added" if concept.images >= min_support else "below_support"
            out.append(concept)
    return out


def refit(old, corpus: TextEmbeddings, positives: Sequence[str], settings: RemineSettings):
    """A detector of ``old``'s score and parameters with ``positives`` (corpus names) and the
    rest of the corpus as negatives."""
    index = {n: i for i, n in enumerate(corpus.names)}
    unknown = [n for n in positives if n not in index]
    if unknown:
        raise RemineError(f"remine: not names of the detector's corpus: {unknown[:10]}")
    if not positives:
        raise RemineError("remine: no positives left; a detector needs at least one")
    pos = np.asarray([index[n] for n in dict.fromkeys(positives)])
    neg = np.setdiff1d(np.arange(len(corpus.names)), pos)
    take = lambda rows: TextEmbeddings(corpus.embeddings[rows],  # noqa: E731
                                       [corpus.names[i] for i in rows])  # fmt: skip
    meta = {k: v for k, v in old.meta.items() if k != "remined"}
    return type(old).fit(None, take(pos), take(neg), old.logit_scale, dict(old.params),
                         meta=meta, device=old.device)  # fmt: skip


def write_diff(path: str | Path, diff: Sequence[Concept]) -> None:
    """The concept diff as TSV (``DIFF_COLUMNS``; examples separated by `` | ``), written whole
    or not at all."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(DIFF_COLUMNS)
        for c in diff:
            w.writerow([c.name, c.change, c.images, c.clusters, " | ".join(c.examples)])


def read_diff_positives(path: str | Path) -> list[str]:
    """The positives of a reviewed diff: the names of its rows whose change is ``added`` or
    ``kept`` (delete a row, or change its change to anything else, to leave a name out)."""
    from clustermine.text_lines import read_text

    lines = read_text(Path(path), "concept diff", RemineError).splitlines()
    if not lines or lines[0].split("\t")[:2] != list(DIFF_COLUMNS[:2]):
        raise RemineError(f"{path}: not a concept diff (its first line must be the header "
                          f"{chr(9).join(DIFF_COLUMNS)})")  # fmt: skip
    out = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0]:
            raise RemineError(f"{path}:{number}: a row needs a name and a change")
        if fields[1] in KEPT_CHANGES:
            out.append(fields[0])
    return out


def remine_files(
    detector_file: str | Path,
    images: dict[str, str | Path],
    evaluation: dict[str, str | Path],
    tests: Sequence[str],
    *,
    out: str | Path,
    diff_out: str | Path,
    summary_out: str | Path,
    settings: dict[str, Any] | None = None,
    convention: str = "clip",
    device: str | None = None,
) -> Remined:
    """The workflow's re-mining job (rule ``remine_deployment``): the detector file re-mined
    from the embedding files of the deployment datasets ``images`` ({dataset: file}), written
    to ``out`` with its concept diff (``diff_out``); ``summary_out`` compares the old and the
    new detector on the ID set's datasets ``evaluation`` ({dataset: file}; ``tests`` are its
    ID test sets, the others its benchmarks): AUROC and FPR95 per (test, benchmark)."""
    from clustermine.detectors import load_detector
    from clustermine.h5io import read_image_embeddings
    from clustermine.metrics import auroc, fpr95

    old = load_detector(detector_file, device)
    parts, paths = [], []
    for dataset, path in images.items():
        data = read_image_embeddings(path)
        old.check_model(data.attrs, str(path))
        parts.append(data.embeddings)
        paths += [f"{dataset}/{p}" for p in data.paths]
    result = remine(old, np.concatenate(parts), paths, RemineSettings(**(settings or {})),
                    source=recorded_path(detector_file))  # fmt: skip
    new = result.detector
    scores = {}
    for dataset, path in evaluation.items():
        data = read_image_embeddings(path)
        old.check_model(data.attrs, str(path))
        scores[dataset] = (old.score(data.embeddings), new.score(data.embeddings))
    rows = []
    for test in tests:
        for bench in (d for d in evaluation if d not in tests):
            (id_old, id_new), (ood_old, ood_new) = scores[test], scores[bench]
            rows.append([test, bench, 100 * auroc(id_old, ood_old), 100 * auroc(id_new, ood_new),
                         100 * fpr95(id_old, ood_old, convention),
                         100 * fpr95(id_new, ood_new, convention)])  # fmt: skip
    new.save(out)
    write_diff(diff_out, result.diff)
    with atomic_path(summary_out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["test", "benchmark", "auroc_old", "auroc_new", "fpr95_old", "fpr95_new"])
        w.writerows([*r[:2], *(f"{v:.4f}" for v in r[2:])] for r in rows)
    return result
