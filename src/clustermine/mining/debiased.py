"""Debiased negative mining (Peng, Lu, Zhang, Fang, KDD 2026): negatives chosen from the corpus
without any ID label, by the density of their raw text features; the positives are Y_GT, or
the positives of another label set (``positives_of``: ClusterMine's mined names, a label-free
combination). The matching score is :mod:`clustermine.detectors.debiased`.

Density. For corpus names i, j with raw text features of norms ν and directions t̂, the
pseudo-distance is d_ij = ν_i + ν_j − 2⟨t̂_i, t̂_j⟩ (unsquared norms, as the official code has
it) and the density r_i is the mean of log d_ij over the k1 + 1 smallest d_ij, i itself
included. Names are ranked by r ascending and the lowest ``noun_fraction`` of the nouns and
``adjective_fraction`` of the adjectives are kept. The k1 + 1 smallest distances are a top-k
of ⟨t̂_i, t̂_j⟩ − ν_j/2, found by the blocked kNN (clustermine.knn.blocked_topk) within the
memory budget: the N × N matrix is never built.

Floor. A distance is a difference of terms of size ν, computed with rounding errors of about
1e-6·ν; where it is near zero its logarithm is rounding noise. That happens to the
self-distance d_ii = 2ν_i − 2 when the raw norms are 1 (a text file of already-normalised
features), to near-duplicate names, and where norms below 1 make distances negative. So every
distance is floored at DISTANCE_FLOOR · (ν_i + ν_j), a hundred times above that rounding:
with unit norms every self term is the same constant and the ranking no longer depends on the
machine. With CLIP's raw text norms (well above 1) the floor never acts.
"""

from __future__ import annotations

import logging

import numpy as np

from clustermine.corpus import normalize_name
from clustermine.knn import blocked_topk
from clustermine.labelsets import LabelSet
from clustermine.mining.gt import positives_or_gt
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.staging import recorded_path

log = logging.getLogger(__name__)

# Parts of speech counted as adjectives; everything else (nouns, ID class names added to the
# corpus, word lists without tags) is ranked with the nouns.
ADJECTIVE_TAGS = ("a", "s")
# Distances below DISTANCE_FLOOR · (ν_i + ν_j) are raised to it (module docstring). Recorded in
# density files, which are refused when computed with another floor.
DISTANCE_FLOOR = 1e-4


def density(
    directions: np.ndarray,
    norms: np.ndarray,
    k1: int,
    *,
    device=None,
    budget_bytes: int | None = None,
) -> tuple[np.ndarray, int]:
    """r_i (float64 [N]) and how many of the distances used were raised to the floor."""
    n = len(directions)
    k = min(int(k1) + 1, n)
    norms = np.asarray(norms, dtype=np.float64)
    bad = int((~(np.isfinite(norms) & (norms > 0))).sum())
    if bad:
        raise ValueError(f"{bad} raw text norms (norms) are not positive and finite")
    top = blocked_topk(
        directions,
        k,
        key_bias=norms / 2,
        exclude_self=False,
        device=device,
        budget_bytes=budget_bytes,
    )
    # top.sims[i, m] = cos_ij − ν_j/2, so d_ij = ν_i − 2 · sims.
    dist = norms[:, None] - 2.0 * top.sims.astype(np.float64)
    floor = DISTANCE_FLOOR * (norms[:, None] + norms[top.indices])
    low = dist < floor
    clamped = int(low.sum())
    if clamped:
        self_low = int((low & (top.indices == np.arange(n)[:, None])).sum())
        log.warning(
            "debiased: %d of %d pseudo-distances d_ij = nu_i + nu_j - 2 cos_ij were below "
            "%g (nu_i + nu_j), i.e. zero up to rounding or negative, and were raised to it. "
            "%d of them are self-distances 2 nu_i - 2, which vanish where the raw text norm "
            "nu_i is 1 (a text file of already-normalised features) and are negative below 1; "
            "the others are between names with such norms or near-duplicate directions. "
            "%d of %d names have nu <= 1 + %g (smallest nu %.6g)",
            clamped, dist.size, DISTANCE_FLOOR, self_low, int((norms <= 1 + DISTANCE_FLOOR).sum()),
            n, DISTANCE_FLOOR, norms.min(),
        )  # fmt: skip
    return np.log(np.maximum(dist, floor)).mean(axis=1), clamped


def write_density(path, r: np.ndarray, clamped: int, attrs: dict) -> None:
    """The density file ``results/{model}/text/density/{corpus}.{prompts}.k{k1}.h5``."""
    import h5py

    from clustermine.atomic import atomic_path
    from clustermine.h5io import write_attrs

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("density", data=np.asarray(r, np.float64))
        write_attrs(f, {**attrs, "kind": "text_density", "clamped_distances": int(clamped),
                        "distance_floor": DISTANCE_FLOOR, "num_names": int(len(r))})  # fmt: skip


def density_of_text_file(text_path, out_path, k1: int, *, device=None, budget_bytes=None):
    """Rule ``text_density``: the density of every name of a text file, written to
    ``out_path`` with the text file's model, corpus and prompt attributes (those it has)."""
    from clustermine.h5io import EmbeddingFileError, read_text_embeddings

    text = read_text_embeddings(text_path)
    if text.norms is None:
        raise EmbeddingFileError(
            f"{text_path} holds no raw text norms (it predates them); delete it so that it is "
            "re-encoded"
        )
    log.info("density of %d names, k1=%d", len(text), k1)
    try:
        r, clamped = density(
            text.embeddings, text.norms, k1, device=device, budget_bytes=budget_bytes
        )
    except ValueError as err:
        raise EmbeddingFileError(f"{text_path}: {err}; delete it so that it is re-encoded") from err
    keys = ("model_arch", "model_pretrained", "corpus", "prompts")
    attrs = {key: text.attrs[key] for key in keys if key in text.attrs}  # missing stays missing
    write_density(out_path, r, clamped, {**attrs, "k1": int(k1), "text": recorded_path(text_path)})


def read_density(path) -> tuple[np.ndarray, dict]:
    """The densities (float64) and attributes of a density file; one computed with another
    distance floor (or before the floor was recorded) is refused by name."""
    import h5py

    from clustermine.h5io import EmbeddingFileError, read_attrs

    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "text_density" or "density" not in f:
            raise EmbeddingFileError(f"{path}: not a text-density file; delete it and rerun")
        attrs = read_attrs(f)
        if attrs.get("distance_floor") != DISTANCE_FLOOR or "clamped_distances" not in attrs:
            raise EmbeddingFileError(
                f"{path}: computed with another distance floor "
                f"({attrs.get('distance_floor', 'unrecorded')}, now {DISTANCE_FLOOR}); delete "
                "it and rerun"
            )
        return f["density"][()].astype(np.float64), attrs


def _cached_clamp_count(inputs: MiningInputs) -> int | None:
    """The floored-distance count recorded in the density file the densities came from (None:
    densities given without their file)."""
    attrs = inputs.corpus_density_attrs
    if attrs is None:
        return None
    path = inputs.sources.get("density", "the density file")
    clamped = int(attrs["clamped_distances"])
    if clamped:
        log.warning(
            "debiased: %d pseudo-distances were raised to the distance floor when %s was "
            "computed (raw text norms at or below 1, or near-duplicate names; see its log)",
            clamped,
            path,
        )
    return clamped


def mine_debiased(
    inputs: MiningInputs,
    *,
    k1: int,
    noun_fraction: float,
    adjective_fraction: float,
    missing_gt: str,
) -> LabelSet:
    """Negative score = the density r (lower = kept first)."""
    if k1 < 1:
        raise MinerConfigError(f"debiased: k1 must be at least 1, got {k1}")
    positives, stats = positives_or_gt(inputs, missing_gt)
    n = len(inputs.corpus_names)
    if inputs.corpus_density is not None:  # cached by the workflow (rule text_density)
        r = np.asarray(inputs.corpus_density, np.float64)
        if len(r) != n:
            raise MinerConfigError(f"debiased: {len(r)} densities for {n} corpus names")
        clamped = _cached_clamp_count(inputs)
    else:
        try:
            r, clamped = density(
                inputs.corpus_emb,
                inputs.text_norms(),
                k1,
                device=inputs.device,
                budget_bytes=inputs.budget_bytes,
            )
        except ValueError as err:
            raise MinerConfigError(
                f"debiased: {inputs.sources.get('corpus', 'corpus')}: {err}"
            ) from err
    tags = inputs.corpus_pos or ["n"] * n
    is_adj = np.array([t in ADJECTIVE_TAGS for t in tags])
    # A corpus row cannot be positive and negative; nor can one bearing a positive's name
    # (Y_GT from class-name embeddings is no corpus row, as the gt miner also has it).
    chosen = LabelSet("debiased", inputs.corpus_names, negatives=[], **positives)
    names = {normalize_name(x) for x in chosen.pos_names}
    excluded = np.array([normalize_name(x) in names for x in inputs.corpus_names], dtype=bool)
    excluded[positives["positives"]] = True
    kept = []
    for part, fraction in ((~is_adj, noun_fraction), (is_adj, adjective_fraction)):
        rows = np.flatnonzero(part)
        count = int(len(rows) * fraction)  # as the official code rounds
        ranked = rows[np.argsort(r[rows], kind="stable")]
        kept.append(ranked[~excluded[ranked]][:count])
    neg = np.concatenate(kept).astype(np.int64)
    log.info(
        "debiased: %d negatives (%d nouns, %d adjectives) of %d names, k1=%d",
        len(neg),
        len(kept[0]),
        len(kept[1]),
        n,
        k1,
    )
    return LabelSet(
        "debiased",
        inputs.corpus_names,
        negatives=neg,
        neg_scores=r[neg],
        stats={
            **stats,
            "n_nouns": int((~is_adj).sum()),
            "n_adjectives": int(is_adj.sum()),
            "n_neg_nouns": int(len(kept[0])),
            "n_neg_adjectives": int(len(kept[1])),
            "clamped_distances": clamped,
        },
        **positives,
    )
