"""Debiased negative mining: the density of raw text features (its floor, its cache and the
attributes of the density file), the per-part-of-speech selection, and the debiased score
against hand computations (τ = 1 is grouped NegLabel, κ ≥ 1 is caught). The score against
the official formula: tests/test_debiased_official.py."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from clustermine.detectors import DetectorConfigError, get_detector
from clustermine.detectors.debiased import groups_for_kappa, kappa
from clustermine.h5io import (
    EmbeddingFileError,
    TextEmbeddings,
    check_same_model,
    read_text_embeddings,
    write_text_embeddings,
)
from clustermine.mining import MinerConfigError, MiningInputs, mine_labels
from clustermine.mining.debiased import density, read_density, write_density


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


# --- the floor of the pseudo-distances -------------------------------------------------------


def unit_corpus(n=200, d=16, seed=0):
    """Directions and raw norms of a text file holding already-normalised features: the
    norms are 1 up to float32 rounding, so every self-distance 2ν − 2 is zero up to rounding."""
    x = unit(np.random.default_rng(seed).normal(size=(n, d)))
    return x


def as_text_file(x):
    """What a text file of normalised features holds: float32 rows and their float32 norms."""
    emb = np.asarray(x, np.float32)
    return emb, np.linalg.norm(emb, axis=1).astype(np.float32)


def renormalised32(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mined(emb, norms, budget_bytes=None):
    n = len(emb)
    inputs = MiningInputs([f"w{i}" for i in range(n)], emb, class_names=["w0"],
                          corpus_pos=["n"] * n, corpus_norms=norms, device="cpu",
                          budget_bytes=budget_bytes or 2**26)  # fmt: skip
    return mine_labels("debiased", inputs, {"k1": 5, "noun_fraction": 0.2}).negatives.tolist()


def test_rounding_noise_does_not_change_the_density_ranking_or_the_negatives():
    rng = np.random.default_rng(1)
    x = unit_corpus()
    emb, norms = as_text_file(x)
    r, _ = density(emb, norms, 5, device="cpu")
    ranking, negatives = np.argsort(r, kind="stable").tolist(), mined(emb, norms)
    variants = {
        "float64 rows": (x, np.linalg.norm(x, axis=1)),
        "1e-7 noise, renormalised": as_text_file(unit(x + 1e-7 * rng.normal(size=x.shape))),
        "scaled and normalised again in float32": as_text_file(renormalised32(emb * 3)),
    }
    for what, (emb2, norms2) in variants.items():
        for budget in (None, 4096):  # other block shapes: other summation orders
            r2, _ = density(emb2, norms2, 5, device="cpu", budget_bytes=budget)
            assert np.argsort(r2, kind="stable").tolist() == ranking, (what, budget)
            assert mined(emb2, norms2, budget) == negatives, (what, budget)
            np.testing.assert_allclose(r2, r, rtol=0, atol=1e-4)


def brute_floored_density(directions, norms, k1):
    """The documented density: d_ij floored at 1e-4 (ν_i + ν_j), float64, full matrix."""
    t = unit(np.asarray(directions, np.float64))
    norms = np.asarray(norms, np.float64)
    d = norms[:, None] + norms[None, :] - 2 * t @ t.T
    d = np.maximum(d, 1e-4 * (norms[:, None] + norms[None, :]))
    return np.log(np.sort(d, axis=1)[:, : k1 + 1]).mean(axis=1)


def test_distances_below_the_floor_are_raised_and_the_warning_names_the_cause(caplog):
    x = unit_corpus(n=50)
    norms = np.ones(50)
    norms[:5] = 0.5  # raw norms below 1: negative distances
    with caplog.at_level(logging.WARNING):
        r, clamped = density(x, norms, 3, device="cpu")
    np.testing.assert_allclose(r, brute_floored_density(x, norms, 3), rtol=1e-6)
    # Every self-distance is at the floor (50), and names 0-4 are nearer each other than that.
    assert clamped >= 50
    assert f"{clamped} of 200 pseudo-distances" in caplog.text
    assert "50 of them are self-distances 2 nu_i - 2, which vanish where" in caplog.text
    assert "50 of 50 names have nu <= 1 + 0.0001 (smallest nu 0.5)" in caplog.text
    # CLIP-like raw norms: the floor never acts.
    caplog.clear()
    r, clamped = density(x, np.linspace(3, 9, 50), 3, device="cpu")
    assert clamped == 0 and not caplog.text


def test_non_positive_raw_norms_are_refused_naming_the_corpus_file():
    x = unit_corpus(n=10)
    norms = np.ones(10)
    norms[3] = 0.0
    inputs = MiningInputs(
        [f"w{i}" for i in range(10)], x, class_names=["w0"], corpus_norms=norms,
        sources={"corpus": "words.h5"}, device="cpu",
    )  # fmt: skip
    with pytest.raises(MinerConfigError, match=r"words\.h5: 1 raw text norms \(norms\) are not"):
        mine_labels("debiased", inputs, {"k1": 3})


def test_the_clamp_count_survives_a_cached_density_file(tmp_path):
    emb, norms = as_text_file(unit_corpus(n=60))
    r, clamped = density(emb, norms, 5, device="cpu")
    assert clamped > 0  # unit norms: the self-distances
    path = tmp_path / "density.h5"
    write_density(path, r, clamped, {"k1": 5})
    cached, attrs = read_density(path)
    names = [f"w{i}" for i in range(60)]
    inputs = MiningInputs(
        names, emb, class_names=["w0"], corpus_pos=["n"] * 60, corpus_density=cached,
        corpus_density_attrs=attrs, sources={"density": str(path)}, device="cpu",
    )  # fmt: skip
    labels = mine_labels("debiased", inputs, {"k1": 5})
    assert labels.stats["clamped_distances"] == clamped == attrs["clamped_distances"]
    assert attrs["distance_floor"] == 1e-4
    # Densities handed over without their file: the count is unknown, not 0.
    inputs.corpus_density_attrs = None
    assert mine_labels("debiased", inputs, {"k1": 5}).stats["clamped_distances"] is None


def test_density_files_of_another_floor_are_refused_by_name(tmp_path):
    path = tmp_path / "old.k5.h5"
    with h5py.File(path, "w") as f:  # as written before the floor was recorded
        f.create_dataset("density", data=np.zeros(3))
        f.attrs.update({"kind": "text_density", "clamped_distances": 0, "k1": 5})
    want = r"old\.k5\.h5: computed with another distance floor \(unrecorded, now 0\.0001\); delete"
    with pytest.raises(EmbeddingFileError, match=want):
        read_density(path)


SCRIPT = textwrap.dedent(
    """
    import runpy, sys
    from types import SimpleNamespace as NS
    text, out, log = sys.argv[1:4]
    snakemake = NS(input=NS(text=text), output=[out], log=[log], wildcards=NS(k="3"),
                   threads=1, resources=NS(device="cpu", budget_mb=64))
    runpy.run_path(sys.argv[4], init_globals={"snakemake": snakemake})
    """
)


@pytest.mark.parametrize("model", [{}, {"model_arch": "ViT-B-16", "model_pretrained": "openai"}])
def test_text_density_copies_the_text_file_attributes_faithfully(tmp_path, model):
    """Rule text_density on a text file with and without model attributes (precomputed text
    files may lack them): what is there is copied, what is missing stays missing, and the
    model check that mining runs accepts the pair."""
    from pathlib import Path

    emb, norms = as_text_file(unit_corpus(n=30))
    text = tmp_path / "text.h5"
    attrs = {**model, "corpus": "words"}
    write_text_embeddings(text, TextEmbeddings(emb, [f"w{i}" for i in range(30)],
                                               norms=norms * 4, attrs=attrs))  # fmt: skip
    out = tmp_path / "density.h5"
    script = Path(__file__).parents[1] / "workflow" / "scripts" / "text_density.py"
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(text), str(out), str(tmp_path / "log"), str(script)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    r, density_attrs = read_density(out)
    for key in ("model_arch", "model_pretrained", "prompts"):
        assert density_attrs.get(key) == model.get(key), key
    assert density_attrs["corpus"] == "words" and density_attrs["k1"] == 3
    check_same_model([(str(text), read_text_embeddings(text).attrs), (str(out), density_attrs)])
    np.testing.assert_allclose(r, brute_floored_density(emb, norms * 4, 3), rtol=1e-6)


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


def test_corpus_names_of_the_id_classes_are_never_negatives_when_y_gt_has_its_own_texts():
    """With class-name embeddings Y_GT is not a corpus row, yet the corpus rows bearing a Y_GT
    name (w3, w40 here, the densest names of their parts of speech) must not turn negative: the
    gt miner leaves them out, and so must debiased."""
    inputs, norms = corpus_inputs(class_names=["w3", "W40"])
    r = brute_density(inputs.corpus_emb, norms.astype(np.float64), 5)
    inputs.corpus_density = r
    densest = [int(np.argmin(r[:30])), 30 + int(np.argmin(r[30:]))]
    inputs.class_names = [f"w{densest[0]}", f"W{densest[1]}"]
    inputs.class_emb = np.random.default_rng(3).normal(size=(2, 8)).astype(np.float32)
    labels = mine_labels("debiased", inputs, {"k1": 5, "noun_fraction": 0.2,
                                              "adjective_fraction": 0.1})  # fmt: skip
    assert labels.pos_names == [f"w{densest[0]}", f"W{densest[1]}"]
    assert not set(densest) & set(labels.negatives.tolist())
    assert len(labels.negatives) == int(30 * 0.2) + int(30 * 0.1)
