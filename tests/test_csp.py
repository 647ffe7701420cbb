"""CSP (Chen, Gao, Xu, NeurIPS 2024): the conjugated labels and the selection re-derived with
plain numpy (and Python's ``random``, the official draw) on small inputs, with the edge cases
of the rule; label sets whose negatives go past the corpus, through their file and a detector;
and the workflow's part (the seed, the conjugated-label jobs, a corpus it cannot conjugate)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from helpers import REPO, make_tiny_project, planned_jobs, read_config, write_config

from clustermine.config import ConfigError, WorkflowConfig, validate_config
from clustermine.corpus import Corpus
from clustermine.h5io import (
    ImageEmbeddings,
    TextEmbeddings,
    write_image_embeddings,
    write_text_embeddings,
)
from clustermine.labelsets import (
    LabelSet,
    LabelSetFileError,
    label_texts,
    read_label_set,
    write_label_set,
)
from clustermine.mining import MinerConfigError, MiningInputs, mine_labels
from clustermine.mining.csp import conjugate, conjugated_corpus, csp_similarity

# The official superclass words (NeurIPS2024-CSP, mmcls/models/classifiers/class_names.py).
OFFICIAL_WORDS = ("environment", "space", "object", "scene", "place", "item", "area", "view",
                  "thing", "pattern", "structure", "landscape", "vista", "creature")  # fmt: skip
D = 16


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_scores(candidates, anchors, quantile=0.95, duplicate=0.95) -> np.ndarray:
    """The official score: the quantile of the cosines to the positives (linear interpolation,
    torch.quantile's and numpy's default), 1 where the largest cosine exceeds ``duplicate``."""
    cos = unit(candidates) @ unit(anchors).T
    scores = np.quantile(cos, quantile, axis=1)
    scores[cos.max(axis=1) > duplicate] = 1.0
    return scores


def reference_kept(scores: np.ndarray, fraction: float) -> np.ndarray:
    return np.argsort(scores, kind="stable")[: int(len(scores) * fraction)]


@pytest.fixture
def pool():
    """40 nouns (the first bears an ID class's name), 12 adjectives (two of them satellites),
    3 ID classes with their own embeddings and the 12 conjugated labels."""
    rng = np.random.default_rng(0)
    names = [f"noun{i}" for i in range(40)] + [f"adj{i}" for i in range(12)]
    tags = ["n"] * 40 + ["a"] * 10 + ["s"] * 2
    classes = ["noun0", "cls1", "cls2"]
    conjugated = TextEmbeddings(rng.normal(size=(12, D)).astype(np.float32),
                                conjugate(names[40:], 0), attrs={"conjugated_seed": 0})
    inputs = MiningInputs(names, rng.normal(size=(52, D)).astype(np.float32), classes,
                          rng.normal(size=(3, D)).astype(np.float32), corpus_pos=tags,
                          conjugated=conjugated)  # fmt: skip
    return inputs


# --- conjugated labels ---------------------------------------------------------------------


def test_one_superclass_word_per_adjective_drawn_as_the_official_code_draws():
    adjectives = [f"adj{i}" for i in range(50)]
    random.seed(7)  # the official draw: random.seed(seed), then one choice per adjective
    official = [f"{a} {random.choice(OFFICIAL_WORDS)}" for a in adjectives]
    assert conjugate(adjectives, 7) == official
    assert conjugate(adjectives, 7) == conjugate(adjectives, 7)
    assert conjugate(adjectives, 8) != conjugate(adjectives, 7)
    assert conjugate([], 7) == []


def test_conjugated_labels_are_the_adjectives_in_corpus_order_without_pertainyms():
    corpus = Corpus(["dog", "red", "uric", "tiny", "odd"], ["n", "a", "a", "s", "a"],
                    ["dog.n.01", "red.s.01", "uric.a.01", "tiny.s.01", ""])  # fmt: skip
    lexnames = {"red.s.01": "adj.all", "uric.a.01": "adj.pert", "tiny.s.01": "adj.all"}
    out = conjugated_corpus(corpus, 3, lexnames.get)
    # A pertainym is left out; an adjective without a synset (a tagged word list) is kept.
    assert out.names == conjugate(["red", "tiny", "odd"], 3)
    assert out.synsets == ["red.s.01", "tiny.s.01", ""] and set(out.pos) == {"conj"}


def test_a_corpus_without_adjectives_has_no_conjugated_labels():
    def never(synset):
        raise AssertionError("WordNet looked up for a corpus without adjectives")

    assert len(conjugated_corpus(Corpus(["dog", "cat"]), 0, never)) == 0
    assert len(conjugated_corpus(Corpus(["dog"], ["n"], ["dog.n.01"]), 0, never)) == 0


def test_wordnet_adjectives_are_conjugated_without_pertainyms():
    from clustermine.corpus import wordnet_corpus
    from clustermine.wordnet import WordNetNotFound, open_wordnet

    try:
        wn = open_wordnet()
    except WordNetNotFound:
        pytest.skip("WordNet 3.0 is not installed")
    corpus = wordnet_corpus(("n", "a"))
    out = conjugated_corpus(corpus, 0)
    assert 9000 < len(out) < corpus.pos.count("a")
    assert not {wn.synset(s).lexname() for s in out.synsets[::50]} - {"adj.all", "adj.ppl"}


# --- selection -----------------------------------------------------------------------------


@pytest.mark.parametrize("noun_fraction,conjugated_fraction", [(0.15, 0.15), (0.3, 0.5), (1, 0)])
def test_selection_is_the_official_rule_on_each_kind(pool, noun_fraction, conjugated_fraction):
    labels = mine_labels("csp", pool, {"noun_fraction": noun_fraction,
                                       "conjugated_fraction": conjugated_fraction})  # fmt: skip
    anchors = pool.class_emb
    # Nouns: every row not tagged as an adjective, the row bearing a class name left out.
    nouns = np.arange(1, 40)
    noun_scores = reference_scores(pool.corpus_emb[nouns], anchors)
    conj_scores = reference_scores(pool.conjugated.embeddings, anchors)
    kept_nouns = reference_kept(noun_scores, noun_fraction)
    kept_conj = reference_kept(conj_scores, conjugated_fraction)
    assert len(kept_nouns) == int(39 * noun_fraction)
    assert len(kept_conj) == int(12 * conjugated_fraction)
    # Nouns first, then the conjugated labels (rows past the corpus), each least similar first.
    np.testing.assert_array_equal(labels.negatives,
                                  np.r_[nouns[kept_nouns], 52 + kept_conj])  # fmt: skip
    expected = np.r_[noun_scores[kept_nouns], conj_scores[kept_conj]]
    np.testing.assert_allclose(labels.neg_scores, expected, rtol=1e-5)
    assert labels.neg_names[len(kept_nouns):] == [pool.conjugated.names[j] for j in kept_conj]
    assert labels.pos_names == ["noun0", "cls1", "cls2"]
    assert labels.extra_names == pool.conjugated.names
    assert labels.stats["n_neg_nouns"] == len(kept_nouns)
    assert labels.stats["n_neg_conjugated"] == len(kept_conj)


def test_the_quantile_at_an_order_statistic_is_that_cosine_not_an_interpolation():
    # 21 positives: the 0.95-quantile sits exactly on the 20th of 21 sorted cosines.
    rng = np.random.default_rng(1)
    anchors = rng.normal(size=(21, D))
    candidate = rng.normal(size=(1, D))
    cos = np.sort((unit(candidate) @ unit(anchors).T)[0])
    score = csp_similarity(candidate, anchors, 0.95, 2.0, 2**20)[0]
    assert score == pytest.approx(cos[-2], abs=1e-6) and abs(cos[-1] - cos[-2]) > 1e-3


def test_a_largest_cosine_exactly_at_the_duplicate_cut_keeps_its_quantile():
    # cos(e1, (½, ½, ½, ½)) is exactly 0.5 in float32: only a cosine above the cut ranks last.
    anchors = np.array([[0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.0, 0.0]])
    candidate = np.array([[1.0, 0.0, 0.0, 0.0]])
    at_cut = csp_similarity(candidate, anchors, 0.95, 0.5, 2**20)[0]
    assert at_cut == pytest.approx(0.95 * 0.5)  # the interpolated quantile of {0, 0.5}
    assert csp_similarity(candidate, anchors, 0.95, 0.4999, 2**20)[0] == 1.0


def test_near_duplicates_of_a_positive_rank_last_and_ties_keep_corpus_order(pool):
    # Every noun is e1, whose cosines are exactly the first coordinates of the positives:
    # equal scores whatever the order of the sums.
    emb = np.zeros((52, D), np.float32)
    emb[:, 0] = 1.0
    emb[7] = pool.class_emb[1]  # a copy of an ID class's text
    inputs = MiningInputs(pool.corpus_names, emb, pool.class_names, pool.class_emb,
                          corpus_pos=pool.corpus_pos, conjugated=pool.conjugated)  # fmt: skip
    labels = mine_labels("csp", inputs, {"noun_fraction": 0.9})
    kept = labels.negatives[labels.negatives < 52]
    # 39 equal scores but one: the first 35 in corpus order, the near-copy never.
    np.testing.assert_array_equal(kept, [i for i in range(1, 40) if i != 7][:35])
    assert labels.stats["n_duplicates"] == 1


def test_a_corpus_without_adjectives_is_an_error_unless_nouns_only(pool):
    pool.conjugated = TextEmbeddings(np.empty((0, D), np.float32), [], attrs={"conjugated_seed": 0})
    with pytest.raises(MinerConfigError, match="no conjugated labels.*missing_adjectives"):
        mine_labels("csp", pool)
    labels = mine_labels("csp", pool, {"missing_adjectives": "nouns_only"})
    assert labels.extra_names == [] and (labels.negatives < 52).all()
    assert len(labels.negatives) == int(39 * 0.15) and labels.stats["n_neg_conjugated"] == 0


def test_conjugated_labels_of_another_seed_or_none_are_refused(pool):
    with pytest.raises(MinerConfigError, match="drawn with seed 0, the label set asks for seed 4"):
        mine_labels("csp", pool, {"seed": 4})
    pool.conjugated = None
    with pytest.raises(MinerConfigError, match="conjugated_labels"):
        mine_labels("csp", pool)


def test_positives_of_another_label_set_replace_y_gt(pool):
    pool.positive_set = LabelSet("clustermine", pool.corpus_names, positives=[3, 4], negatives=[])
    labels = mine_labels("csp", pool, {"noun_fraction": 0.5})
    nouns = np.array([i for i in range(40) if i not in (3, 4)])
    scores = reference_scores(pool.corpus_emb[nouns], pool.corpus_emb[[3, 4]])
    kept = nouns[reference_kept(scores, 0.5)]
    np.testing.assert_array_equal(labels.negatives[labels.negatives < 52], kept)
    assert labels.pos_names == ["noun3", "noun4"]
    assert labels.stats["positives_from"] == "clustermine"


# --- label sets with negatives past the corpus ---------------------------------------------


def test_label_set_files_index_extra_negatives_in_their_own_text_file(pool, tmp_path):
    labels = mine_labels("csp", pool, {"conjugated_fraction": 0.5})
    tsv = tmp_path / "csp.tsv"
    write_label_set(tsv, labels)
    rows = [r.split("\t") for r in tsv.read_text().splitlines()[1:]]
    extra_rows = [r for r in rows if r[3] == "extra"]  # index, name, role, source, ...
    assert len(extra_rows) == 6 and all(r[2] == "neg" and int(r[0]) < 12 for r in extra_rows)
    back = read_label_set(tsv, pool.corpus_names, pool.class_names, pool.conjugated.names)
    np.testing.assert_array_equal(back.negatives, labels.negatives)
    assert back.neg_names == labels.neg_names
    with pytest.raises(LabelSetFileError, match="beyond the corpus.*not given"):
        read_label_set(tsv, pool.corpus_names, pool.class_names)
    with pytest.raises(LabelSetFileError, match="does not match the extra text file"):
        read_label_set(tsv, pool.corpus_names, pool.class_names, pool.conjugated.names[::-1])
    corpus = TextEmbeddings(pool.corpus_emb, pool.corpus_names)
    classes = TextEmbeddings(pool.class_emb, pool.class_names)
    _, _, neg = label_texts(tsv, corpus, classes, pool.conjugated)
    expected = [pool.corpus_emb[i] if i < 52 else pool.conjugated.embeddings[i - 52]
                for i in labels.negatives]  # fmt: skip
    np.testing.assert_array_equal(neg.embeddings, np.array(expected))


def test_mining_and_fitting_read_the_conjugated_text_file(pool, tmp_path):
    from clustermine.detectors.files import fit_detector_files
    from clustermine.mining.files import mine_label_set_files

    model = {"model_arch": "tiny", "model_pretrained": "none", "logit_scale": 100.0}
    rng = np.random.default_rng(2)
    images = tmp_path / "train.h5"
    write_image_embeddings(images, ImageEmbeddings(rng.normal(size=(6, D)), np.arange(6) % 3,
                                                   [f"{i}.png" for i in range(6)],
                                                   pool.class_names, model))  # fmt: skip
    files = {"images": images, "text": tmp_path / "words.h5", "classes": [tmp_path / "cls.h5"],
             "conjugated": tmp_path / "conj.h5"}  # fmt: skip
    write_text_embeddings(files["text"], TextEmbeddings(
        pool.corpus_emb, pool.corpus_names, pool.corpus_pos, attrs={**model, "corpus": "w"}))
    write_text_embeddings(files["classes"][0], TextEmbeddings(
        pool.class_emb, pool.class_names, attrs=model))
    write_text_embeddings(files["conjugated"], TextEmbeddings(
        pool.conjugated.embeddings, pool.conjugated.names,
        attrs={**model, "corpus": "w", "conjugated_seed": 0}))  # fmt: skip
    labels = mine_label_set_files(files, "csp", {"conjugated_fraction": 0.5},
                                  str(tmp_path / "csp.tsv"), context={"label_set": "csp"})
    assert labels.stats["n_neg_conjugated"] == 6
    fit = {"train": images, "text": files["text"], "labels": tmp_path / "csp.tsv",
           "classes": files["classes"][0], "context": {"method": "csp"}}  # fmt: skip
    detector = fit_detector_files("eq1_grouped", {"groups": 2, "tau": 0.01},
                                  extra=files["conjugated"], **fit)  # fmt: skip
    assert detector.text_neg.names == labels.neg_names
    with pytest.raises(LabelSetFileError, match="beyond the corpus"):
        fit_detector_files("eq1_grouped", {"groups": 2}, **fit)


# --- the workflow --------------------------------------------------------------------------


def csp_config(corpus: dict, **label_set) -> dict:
    return {
        "seed": 5,
        "models": {"m": {"arch": "clustermine-tiny", "pretrained": None}},
        "datasets": {name: {"type": "imagefolder", "root": f"data/{name}"}
                     for name in ("train", "test", "ood")},
        "corpora": {"words": corpus},
        "label_sets": {"csp": {"miner": "csp", **label_set}},
        "methods": {"csp": {"score": "eq1_grouped", "labels": "csp", "tau": 0.01}},
        "idsets": {"tiny": {"train": "train", "test": ["test"], "corpus": "words",
                            "benchmarks": ["ood"]}},
    }  # fmt: skip


def checked(config: dict) -> WorkflowConfig:
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    cfg = WorkflowConfig(config, lambda spec: True)
    cfg.check()
    return cfg


def test_the_draw_seed_defaults_to_the_global_seed():
    words = {"type": "wordnet", "pos": ["n", "a"]}
    assert checked(csp_config(words)).label_set_conjugated_seed("csp") == 5
    assert checked(csp_config(words, seed=2)).label_set_conjugated_seed("csp") == 2
    assert checked(csp_config(words)).label_set("csp")[1]["seed"] == 5  # what the miner gets


def test_a_precomputed_corpus_cannot_be_conjugated():
    precomputed = {"type": "embeddings", "paths": {"m": "words.h5"}}
    with pytest.raises(ConfigError, match="label set 'csp' .*corpus 'words' is a file of "
                                          "precomputed embeddings"):  # fmt: skip
        checked(csp_config(precomputed))


def test_the_workflow_plans_the_conjugated_labels_once_for_mining_and_fitting(tmp_path):
    project = make_tiny_project(tmp_path)
    config = read_config(project)
    config["label_sets"] = {"csp": {"miner": "csp", "missing_adjectives": "nouns_only"},
                            "csp-s1": {"miner": "csp", "seed": 1,
                                       "missing_adjectives": "nouns_only"}}  # fmt: skip
    config["methods"] = {"csp": {"score": "eq1_grouped", "labels": "csp", "groups": 2},
                         "csp-s1": {"score": "eq1", "labels": "csp-s1"}}  # fmt: skip
    write_config(project, config)
    jobs = planned_jobs(project)
    assert jobs["conjugated_names"] == 2 and jobs["embed_conjugated"] == 2
    assert jobs["mine_labels"] == 2 and jobs["fit_detector"] == 2
