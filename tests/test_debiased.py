"""Debiased negative mining: the density of raw text features, the per-part-of-speech
selection, and the debiased score against hand computations (τ = 1 is grouped NegLabel,
κ ≥ 1 is caught, the clamp holds the bracket at e^{-1/T})."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from clustermine.detectors import DetectorConfigError, get_detector
from clustermine.detectors.debiased import groups_for_kappa, kappa
from clustermine.h5io import TextEmbeddings, read_text_embeddings, write_text_embeddings
from clustermine.mining import MinerConfigError, MiningInputs, mine_labels
from clustermine.mining.debiased import density


pytestmark = pytest.mark.usefixtures("one_thread")


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_density(directions, norms, k1):
    t = unit(np.asarray(directions, np.float64))
    d = norms[:, None] + norms[None, :] - 2 * t @ t.T
    return np.log(np.sort(d, axis=1)[:, : k1 + 1]).mean(axis=1)


def test_density_by_hand():
    # Three names on a line of directions, raw norms 3, 2, 5.
    directions = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    norms = np.array([3.0, 2.0, 5.0])
    r, clamped = density(directions, norms, k1=1, device="cpu")
    # Name 0: d_00 = 6 - 2 = 4, d_01 = 5 - 0 = 5, d_02 = 8 - 2·0.7071 = 6.586: mean log of 4, 5.
    assert r[0] == pytest.approx((math.log(4) + math.log(5)) / 2)
    # Name 1: d_10 = 5, d_11 = 2, d_12 = 7 - 1.414: mean log of 2 and 5.
    assert r[1] == pytest.approx((math.log(2) + math.log(5)) / 2)
    assert clamped == 0
    rng = np.random.default_rng(0)
    directions, norms = rng.normal(size=(300, 16)), rng.uniform(2, 9, 300)
    r, _ = density(directions, norms, k1=10, device="cpu", budget_bytes=4096)  # many blocks
    np.testing.assert_allclose(r, brute_density(directions, norms, 10), rtol=1e-5)


def corpus_inputs(n=60, seed=0, **kw):
    rng = np.random.default_rng(seed)
    names = [f"w{i}" for i in range(n)]
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    pos = ["n"] * (n // 2) + ["a"] * (n - n // 2)
    norms = rng.uniform(3, 8, n).astype(np.float32)
    return MiningInputs(names, emb, corpus_pos=pos, corpus_norms=norms, device="cpu", **kw), norms


def test_negatives_are_the_densest_share_of_each_part_of_speech():
    inputs, norms = corpus_inputs(class_names=["w3", "w40"])
    labels = mine_labels("debiased", inputs, {"k1": 5, "noun_fraction": 0.2,
                                              "adjective_fraction": 0.1})
    r = brute_density(inputs.corpus_emb, norms.astype(np.float64), 5)
    nouns, adjs = np.arange(30), np.arange(30, 60)
    # Y_GT comes from the corpus here (no class-name embeddings), so w3 and w40 are positives
    # and never negatives; the kept names are the densest others.
    assert labels.pos_names == ["w3", "w40"]
    want_n = [i for i in nouns[np.argsort(r[nouns], kind="stable")] if i != 3][: int(30 * 0.2)]
    want_a = [i for i in adjs[np.argsort(r[adjs], kind="stable")] if i != 40][: int(30 * 0.1)]
    assert labels.negatives.tolist() == want_n + want_a
    np.testing.assert_allclose(labels.neg_scores, r[want_n + want_a], rtol=1e-5)
    assert labels.stats["n_neg_nouns"] == 6 and labels.stats["n_neg_adjectives"] == 3


def test_positives_of_another_label_set_replace_y_gt():
    inputs, _ = corpus_inputs()
    other = mine_labels("posmine", MiningInputs(inputs.corpus_names, inputs.corpus_emb,
                                                top1=np.array([5, 5, 7, 7, 7]), device="cpu"),
                        {"min_votes": 2})  # fmt: skip
    inputs.positive_set = other
    labels = mine_labels("debiased", inputs, {"k1": 3})
    assert labels.pos_names == ["w5", "w7"] and not set(labels.negatives) & {5, 7}
    assert labels.stats["positives_from"] == "posmine"


def test_text_files_without_raw_norms_refuse_the_miner_by_name(tmp_path):
    path = tmp_path / "old.h5"
    write_text_embeddings(path, TextEmbeddings(np.eye(4, 3), list("abcd")))
    old = read_text_embeddings(path)
    assert old.norms is None
    inputs = MiningInputs(old.names, old.embeddings, class_names=["a"], sources={"corpus": str(path)})
    with pytest.raises(MinerConfigError, match=r"raw norms .*old\.h5.*delete it"):
        mine_labels("debiased", inputs)
    write_text_embeddings(path, TextEmbeddings(np.eye(4, 3), list("abcd"), norms=np.arange(4.0)))
    assert read_text_embeddings(path).norms.tolist() == [0, 1, 2, 3]


# --- the debiased score ---------------------------------------------------------------------


def texts(rng, n, d=6, name="t"):
    return TextEmbeddings(unit(rng.normal(size=(n, d))).astype(np.float32),
                          [f"{name}{i}" for i in range(n)])  # fmt: skip


def direct_score(images, pos, neg, perm, groups, temperature, tau):
    """S(x) = mean_j A / Z_j of the issue, in float64 (no clamp: the cases below avoid it)."""
    x = unit(np.asarray(images, np.float64))
    a = np.exp(x @ pos.embeddings.T.astype(np.float64) / temperature).sum(1)
    q = len(perm) // groups
    c = len(pos.names)
    s = np.zeros(len(x))
    for j in range(groups):
        neg_j = neg.embeddings[perm[j * q : (j + 1) * q]].astype(np.float64)
        b = np.exp(x @ neg_j.T / temperature).sum(1)
        z = a + q * ((1 / tau) * b / q - ((1 - tau) / tau) * a / c)
        s += a / z / groups
    return s


def test_debiased_score_matches_the_formula():
    rng = np.random.default_rng(3)
    pos, neg = texts(rng, 40, name="p"), texts(rng, 30, name="n")
    images = rng.normal(size=(25, 6))
    params = {"temperature": 0.5, "groups": 3, "tau_ood": 0.7, "seed": 4}
    det = get_detector("debiased").fit(None, pos, neg, 100.0, params, device="cpu")
    perm = np.random.default_rng(4).permutation(30)
    want = direct_score(images, pos, neg, perm, 3, 0.5, 0.7)
    np.testing.assert_allclose(np.exp(det.score(images)), want, rtol=1e-5)
    assert det.fit_stats["kappa"] == pytest.approx(10 * 0.3 / (0.7 * 40))
    assert det.score_stats["clamped_pairs"] == 0


def test_tau_one_is_grouped_neglabel_exactly():
    rng = np.random.default_rng(5)
    pos, neg = texts(rng, 7, name="p"), texts(rng, 40, name="n")
    images = rng.normal(size=(30, 6))
    debiased = get_detector("debiased").fit(
        None, pos, neg, 100.0, {"temperature": 0.01, "groups": 8, "tau_ood": 1.0, "seed": 2},
        device="cpu", budget_bytes=2048,
    )  # fmt: skip
    neglabel = get_detector("eq1_grouped").fit(
        None, pos, neg, 100.0, {"tau": 0.01, "groups": 8, "seed": 2}, device="cpu",
        budget_bytes=2048,
    )  # fmt: skip
    np.testing.assert_array_equal(debiased.score(images), neglabel.score(images))


def test_kappa_is_refused_or_met_by_more_groups(caplog):
    rng = np.random.default_rng(6)
    pos, neg = texts(rng, 10, name="p"), texts(rng, 1000, name="n")
    # G = 10 → Q = 100, κ = 100 · 0.5 / (0.5 · 10) = 10.
    assert kappa(100, 0.5, 10) == pytest.approx(10.0)
    with pytest.raises(DetectorConfigError, match=r"kappa = .* = 10 >= 1 .*use at least groups: 101"):
        get_detector("debiased").fit(None, pos, neg, 100.0, {"groups": 10, "kappa": "refuse"})
    # Adapted: Q ≤ 9 keeps κ < 1, and ⌊1000/G⌋ ≤ 9 first holds at G = 101 (Q = 9, κ = 0.9).
    assert groups_for_kappa(1000, 10, 0.5, 10) == 101
    with caplog.at_level(logging.WARNING):
        det = get_detector("debiased").fit(None, pos, neg, 100.0, {"groups": 10}, device="cpu")
    assert det.fit_stats["groups"] == 101 and det.fit_stats["kappa"] == pytest.approx(0.9)
    assert "KAPPA 10 >= 1" in caplog.text and det.fit_stats["warnings"]
    # One positive and τ = 0.5: even Q = 1 gives κ = 1, nothing helps.
    with pytest.raises(DetectorConfigError, match="raise tau_ood"):
        get_detector("debiased").fit(None, texts(rng, 1), neg, 100.0, {"groups": 10})


def test_the_bracket_is_clamped_at_its_minimum_and_counted():
    rng = np.random.default_rng(7)
    pos, neg = texts(rng, 50, d=64, name="p"), texts(rng, 20, d=64, name="n")
    images = pos.embeddings[:5]  # ID images; every negative is nearly orthogonal to them
    params = {"temperature": 0.05, "groups": 2, "tau_ood": 0.5, "seed": 0}
    det = get_detector("debiased").fit(None, pos, neg, 100.0, params, device="cpu")
    log_s = det.score(images)
    # The negative mass is tiny next to the debiasing term: every (image, group) bracket is
    # below zero, so it is clamped at e^{-1/T} and Z_j = A + Q e^{-1/T}.
    assert det.score_stats == {"clamped_pairs": 10, "pairs": 10}
    x = unit(images.astype(np.float64))
    a = np.exp(x @ pos.embeddings.T.astype(np.float64) / 0.05).sum(1)
    np.testing.assert_allclose(log_s, np.log(a / (a + 10 * math.exp(-1 / 0.05))), rtol=1e-9)
    assert np.isfinite(log_s).all()
