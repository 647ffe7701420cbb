"""How close mined positives are to the ID class names (ClusterMine paper, label analysis).

- overlap = |Y_GT ∩ Y_pos| / |Y_GT| and F1 = 2|Y_GT ∩ Y_pos| / (|Y_GT| + |Y_pos|), names
  matched after :func:`clustermine.corpus.normalize_name`;
- top1_text_sim: mean over mined labels of their highest text-text cosine to a Y_GT name;
- wordnet_hops: mean over mined labels of the WordNet shortest-path distance (nltk's
  ``shortest_path_distance``: edges up to a common hypernym) to the nearest Y_GT synset, from
  the text files' ``synset`` column; ``None`` when synsets are unavailable.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Sequence

import numpy as np

from clustermine.h5io import normalize
from clustermine.corpus import normalize_name

log = logging.getLogger(__name__)


def set_overlap(pos_names: Sequence[str], gt_names: Sequence[str]) -> tuple[float, float]:
    """(overlap, F1) of the normalised name sets."""
    pos = {normalize_name(n) for n in pos_names}
    gt = {normalize_name(n) for n in gt_names}
    if not gt:
        raise ValueError("label overlap needs at least one ID class name")
    hit = len(pos & gt)
    f1 = 2.0 * hit / (len(pos) + len(gt)) if pos else 0.0
    return hit / len(gt), f1


def top1_text_similarities(pos_emb: np.ndarray, gt_emb: np.ndarray) -> np.ndarray:
    """For every mined label, its highest cosine to any Y_GT text embedding."""
    if not len(pos_emb) or not len(gt_emb):
        raise ValueError("top-1 text similarity needs mined and Y_GT embeddings")
    return (normalize(pos_emb) @ normalize(gt_emb).T).max(axis=1).astype(np.float64)


def top1_text_similarity(pos_emb: np.ndarray, gt_emb: np.ndarray) -> float:
    """Mean over mined labels of the highest cosine to any Y_GT text embedding."""
    return float(top1_text_similarities(pos_emb, gt_emb).mean())


def _ancestor_distances(synset) -> dict[Any, int]:
    """Synset → fewest hypernym (incl. instance-hypernym) edges up from ``synset``; itself 0."""
    out: dict[Any, int] = {synset: 0}
    queue = deque([synset])
    while queue:
        s = queue.popleft()
        for h in s.hypernyms() + s.instance_hypernyms():
            if h not in out:
                out[h] = out[s] + 1
                queue.append(h)
    return out


def wordnet_hops(
    pos_synsets: Sequence[str | None], gt_synsets: Sequence[str | None], wordnet=None
) -> dict[str, Any] | None:
    """Mean shortest-path distance from each mined synset to the nearest Y_GT synset.

    The distance to a set is the minimum over common ancestors a of d(x, a) + min_g d(g, a),
    which equals the minimum of nltk's pairwise ``shortest_path_distance`` but costs one
    hypernym walk per synset instead of one per pair. Labels without a synset or without any
    path (e.g. adjectives) are counted and left out.
    """
    if wordnet is None:
        from clustermine.wordnet import open_wordnet

        wordnet = open_wordnet()

    def lookup(name: str | None):
        if not name or name == "none":
            return None
        try:
            return wordnet.synset(name)
        except Exception:  # noqa: BLE001 - nltk raises several types for unknown names
            log.debug("WordNet has no synset %r", name)
            return None

    to_gt: dict[Any, int] = {}
    for syn in filter(None, map(lookup, set(gt_synsets))):
        for anc, d in _ancestor_distances(syn).items():
            if d < to_gt.get(anc, d + 1):
                to_gt[anc] = d
    if not to_gt:
        return None
    per_label, no_path, no_synset = [], 0, 0
    for name in pos_synsets:
        syn = lookup(name)
        best = None
        if syn is None:
            no_synset += 1
        else:
            best = min(
                (d + to_gt[a] for a, d in _ancestor_distances(syn).items() if a in to_gt),
                default=None,
            )
            no_path += best is None
        per_label.append(best)
    hops = [h for h in per_label if h is not None]
    return {
        "mean": float(np.mean(hops)) if hops else None,
        "n_with_path": len(hops),
        "n_no_path": no_path,
        "n_no_synset": no_synset,
        "per_label": per_label,
    }


def label_quality(
    pos_names: Sequence[str],
    pos_emb: np.ndarray,
    n_neg: int,
    n_corpus: int,
    gt_names: Sequence[str] | None = None,
    gt_emb: np.ndarray | None = None,
    pos_synsets: Sequence[str | None] | None = None,
    gt_synsets: Sequence[str | None] | None = None,
    wordnet=None,
    per_label: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The ``label_quality`` block of a metrics file.

    Without Y_GT (an ID set without class names) the Y_GT-relative numbers are ``None``;
    without synsets for both sides, ``wordnet_hops`` is. A dict passed as ``per_label`` receives
    the numbers of every mined label (``gt_sim``, ``gt_hops``: float arrays in the order of
    ``pos_names``, NaN where undefined), which the label-set files keep for histograms.
    """
    out: dict[str, Any] = {
        "n_pos": int(len(pos_names)),
        "n_neg": int(n_neg),
        "n_corpus": int(n_corpus),
        "overlap": None,
        "f1": None,
        "top1_text_sim": None,
        "wordnet_hops": None,
    }
    columns = per_label if per_label is not None else {}
    columns["gt_sim"] = np.full(len(pos_names), np.nan)
    columns["gt_hops"] = np.full(len(pos_names), np.nan)
    if not gt_names or not len(pos_names):
        return out
    out["overlap"], out["f1"] = set_overlap(pos_names, gt_names)
    if gt_emb is not None and len(gt_emb):
        columns["gt_sim"] = top1_text_similarities(pos_emb, gt_emb)
        out["top1_text_sim"] = float(columns["gt_sim"].mean())
    if not pos_synsets or not gt_synsets or not any(gt_synsets):
        log.info("label quality: no synsets for the labels; WordNet hops skipped")
        return out
    try:
        hops = wordnet_hops(pos_synsets, gt_synsets, wordnet)
    except Exception as err:  # noqa: BLE001 - WordNet unavailable is not a failure here
        log.warning("label quality: WordNet hops skipped (%s)", err)
        return out
    if hops is not None:
        columns["gt_hops"] = np.array([np.nan if h is None else h for h in hops.pop("per_label")])
        out["wordnet_hops"] = hops["mean"]
        log.info("label quality: WordNet hops %s", hops)
    return out
