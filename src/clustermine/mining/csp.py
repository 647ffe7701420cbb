"""CSP, the conjugated semantic pool (Chen, Gao, Xu, NeurIPS 2024): NegLabel's negatives drawn
from a pool of corpus nouns *and* conjugated labels "<adjective> <superclass word>".

Conjugated labels. Every adjective of the corpus (rows tagged ``a`` or ``s``; pertainyms, the
WordNet lexicographer file ``adj.pert``, left out as the official configs exclude it) gets one
superclass word drawn from :data:`SUPERCLASS_WORDS` by Python's ``random.Random(seed)``, one
``choice`` per adjective in corpus order: the official draw (``random.seed(seed)``, then
``random.choice`` per adjective in file order). They are text of their own, embedded with
CSP's adjective templates (:data:`clustermine.prompts.CONJUGATED_PROMPTS`) into a text file
beside the corpus (rules ``conjugated_names`` and ``embed_conjugated``); the miner reads it
as the need ``conjugated_labels``.

Selection. Positives are Y_GT, or the positives of the label set named by ``positives_of``
(ClusterMine's mined names: a label-free CSP). Candidates are the corpus nouns (every row not
tagged as an adjective, positives and corpus rows bearing a positive's name left out) and the
conjugated labels. Each candidate's score is the ``quantile`` (0.95) of its cosines to the
positives, linear interpolation (NegLabel's rule), or 1 when its largest cosine to a positive
exceeds ``duplicate_cosine`` (0.95; compared in float32, as the official code compares).
Nouns and conjugated labels are ranked apart, lowest score first (ties in corpus order), and
the first ``int(n · fraction)`` of each kind are kept: ``noun_fraction`` of the nouns, then
``conjugated_fraction`` of the conjugated labels, in that order (the official order, which
``remainder: drop`` of the grouped score relies on). The score is NegLabel's grouped Eq. 1
(``eq1_grouped``). docs/methods.md lists every choice with the official default.
"""

from __future__ import annotations

import logging
import random
from typing import Callable, Sequence

import numpy as np

from clustermine.corpus import Corpus, normalize_name, read_corpus_tsv, write_corpus_tsv
from clustermine.labelsets import LabelSet
from clustermine.mining.clipscope import kth_largest_similarity
from clustermine.mining.debiased import ADJECTIVE_TAGS
from clustermine.mining.gt import positives_or_gt
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.negatives import quantile_similarity

log = logging.getLogger(__name__)

# The official superclass words (class_names.py, ``csp_templates``: "{} environment", ...).
SUPERCLASS_WORDS = (
    "environment", "space", "object", "scene", "place", "item", "area", "view", "thing",
    "pattern", "structure", "landscape", "vista", "creature",
)  # fmt: skip
# WordNet lexicographer files whose adjectives are not conjugated (official: adj.pert).
EXCLUDED_LEXNAMES = ("adj.pert",)
# The part-of-speech tag of conjugated labels in their names table and text file.
CONJUGATED_TAG = "conj"


# --- conjugated labels ---------------------------------------------------------------------


def conjugate(adjectives: Sequence[str], seed: int,
              words: Sequence[str] = SUPERCLASS_WORDS) -> list[str]:  # fmt: skip
    """The labels "<adjective> <word>", one word per adjective, drawn in order by
    ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [f"{adjective} {rng.choice(words)}" for adjective in adjectives]


def wordnet_lexname() -> Callable[[str], str | None]:
    """synset name → its WordNet lexicographer file (None for a name WordNet lacks)."""
    from nltk.corpus.reader.wordnet import WordNetError

    from clustermine.wordnet import open_wordnet

    wn = open_wordnet()

    def lexname(synset: str) -> str | None:
        try:
            return wn.synset(synset).lexname()
        except (WordNetError, ValueError):
            return None

    return lexname


def conjugated_corpus(
    corpus: Corpus, seed: int, lexname_of: Callable[[str], str | None] | None = None
) -> Corpus:
    """The conjugated labels of a corpus's adjectives, in corpus order, each with its
    adjective's synset. Adjectives with a synset in :data:`EXCLUDED_LEXNAMES` are left out
    (``lexname_of`` looks them up; WordNet by default, opened only when a synset is given). A
    corpus without adjective tags gives none."""
    tags = corpus.pos or [""] * len(corpus)
    synsets = corpus.synsets or [""] * len(corpus)
    rows = [i for i, tag in enumerate(tags) if tag in ADJECTIVE_TAGS]
    if any(synsets[i] for i in rows):
        lexname_of = lexname_of or wordnet_lexname()
        excluded = {i for i in rows if synsets[i] and lexname_of(synsets[i]) in EXCLUDED_LEXNAMES}
        rows = [i for i in rows if i not in excluded]
    names = conjugate([corpus.names[i] for i in rows], seed)
    return Corpus(names, [CONJUGATED_TAG] * len(rows), [synsets[i] for i in rows])


def write_conjugated_names(corpus_tsv, out_tsv, seed: int) -> Corpus:
    """Rule ``conjugated_names``: the conjugated labels of a corpus table, as a corpus table."""
    conjugated = conjugated_corpus(read_corpus_tsv(corpus_tsv), seed)
    log.info("%d conjugated labels of %s (seed %d)", len(conjugated), corpus_tsv, seed)
    if not len(conjugated):
        log.warning("%s has no adjectives (rows tagged %s): no conjugated labels", corpus_tsv,
                    "/".join(ADJECTIVE_TAGS))  # fmt: skip
    write_corpus_tsv(out_tsv, conjugated)
    return conjugated


# --- selection -----------------------------------------------------------------------------


def csp_similarity(
    candidates: np.ndarray,
    anchors: np.ndarray,
    quantile: float,
    duplicate_cosine: float,
    budget_bytes: int,
    device=None,
) -> np.ndarray:
    """Each candidate's ``quantile`` cosine to the anchors (float64), or 1.0 where its largest
    cosine exceeds ``duplicate_cosine`` (both float32, as the official comparison)."""
    if not len(candidates):
        return np.empty(0, dtype=np.float64)
    q = quantile_similarity(candidates, anchors, quantile, budget_bytes, device)
    top = kth_largest_similarity(candidates, anchors, 1, budget_bytes, device)
    return np.where(top.astype(np.float32) > np.float32(duplicate_cosine), 1.0, q)


def least_similar(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Positions of the ``int(len(scores) · fraction)`` lowest scores, lowest first, ties in
    order (the official count: ``int(len · neg_topk)``)."""
    count = int(len(scores) * fraction)
    return np.argsort(scores, kind="stable")[:count]


def mine_csp(
    inputs: MiningInputs,
    *,
    noun_fraction: float,
    conjugated_fraction: float,
    quantile: float,
    duplicate_cosine: float,
    seed: int,
    missing_adjectives: str,
    missing_gt: str,
) -> LabelSet:
    """Negatives: the kept nouns, then the kept conjugated labels; scores their CSP
    similarity (lower = kept first)."""
    conjugated = _conjugated_labels(inputs, seed, missing_adjectives)
    positives, stats = positives_or_gt(inputs, missing_gt)
    chosen = LabelSet("csp", inputs.corpus_names, negatives=[], **positives)
    anchors = chosen.positive_embeddings(inputs.corpus_emb, inputs.class_emb)
    if not len(anchors):
        raise MinerConfigError("csp: no positives to rank the candidates against")
    positive_names = {normalize_name(name) for name in chosen.pos_names}
    tags = inputs.corpus_pos or [""] * len(inputs.corpus_names)
    nouns = np.asarray(
        [i for i, (name, tag) in enumerate(zip(inputs.corpus_names, tags))
         if tag not in ADJECTIVE_TAGS and normalize_name(name) not in positive_names],
        dtype=np.int64,
    )  # fmt: skip
    scored = [
        csp_similarity(emb, anchors, quantile, duplicate_cosine, inputs.budget_bytes,
                       inputs.device)
        for emb in (inputs.corpus_emb[nouns], conjugated.embeddings)
    ]  # fmt: skip
    kept = [least_similar(s, f) for s, f in zip(scored, (noun_fraction, conjugated_fraction))]
    negatives = np.concatenate([nouns[kept[0]], len(inputs.corpus_names) + kept[1]])
    log.info(
        "csp: %d negatives: %d of %d nouns, %d of %d conjugated labels",
        len(negatives), len(kept[0]), len(nouns), len(kept[1]), len(conjugated.names),
    )  # fmt: skip
    return LabelSet(
        "csp",
        inputs.corpus_names,
        negatives=negatives,
        neg_scores=np.concatenate([scored[0][kept[0]], scored[1][kept[1]]]),
        extra_names=list(conjugated.names),
        stats={
            **stats,
            "n_noun_candidates": int(len(nouns)),
            "n_conjugated_candidates": len(conjugated.names),
            "n_neg_nouns": int(len(kept[0])),
            "n_neg_conjugated": int(len(kept[1])),
            "n_duplicates": int(sum((s == 1.0).sum() for s in scored)),
        },
        **positives,
    )


def _conjugated_labels(inputs: MiningInputs, seed: int, missing_adjectives: str):
    """The conjugated labels' text file, checked against the label set's seed; an empty one is
    an error unless ``missing_adjectives`` is ``nouns_only``."""
    conjugated = inputs.conjugated
    where = inputs.sources.get("conjugated", "the conjugated-label text file")
    if conjugated is None:
        raise MinerConfigError("csp needs the text file of its conjugated labels (need "
                               "conjugated_labels), which was not given")  # fmt: skip
    drawn = conjugated.attrs.get("conjugated_seed")
    if drawn is not None and int(drawn) != int(seed):
        raise MinerConfigError(
            f"csp: {where} was drawn with seed {drawn}, the label set asks for seed {seed}"
        )
    if not len(conjugated.names):
        message = (
            f"csp: {where} holds no conjugated labels: the corpus "
            f"({inputs.sources.get('corpus', 'its text file')}) has no adjectives (rows tagged "
            f"{'/'.join(ADJECTIVE_TAGS)}, other than pertainyms). Use a WordNet corpus with "
            "pos [n, a], or set missing_adjectives: nouns_only to mine from the nouns alone"
        )
        if missing_adjectives != "nouns_only":
            raise MinerConfigError(message)
        log.warning("%s; mining from the nouns alone (missing_adjectives: nouns_only)", message)
    return conjugated
