"""AUROC and FPR95 against scikit-learn and hand-computed values; label quality."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from clustermine.label_quality import (
    label_quality,
    set_overlap,
    top1_text_similarity,
    wordnet_hops,
)
from clustermine.metrics import auroc, evaluate_benchmarks, fpr95, metrics_record


def sk_auroc(id_s, ood_s):
    y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    return roc_auc_score(y, np.r_[id_s, ood_s])


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    id_s = rng.integers(0, 6, size=37).astype(float)  # many ties
    ood_s = rng.integers(-2, 4, size=23).astype(float)
    assert auroc(id_s, ood_s) == pytest.approx(sk_auroc(id_s, ood_s), abs=1e-12)
    cont_id, cont_ood = rng.normal(1, 1, 500), rng.normal(0, 1, 300)
    assert auroc(cont_id, cont_ood) == pytest.approx(sk_auroc(cont_id, cont_ood), abs=1e-12)


def test_auroc_hand_computed():
    # Pairs (id > ood) + ½ (ties): id 3 beats 1,2 (2) ties 3 (½); id 2 beats 1 (1), ties 2 (½)
    assert auroc([3, 2], [1, 2, 3]) == pytest.approx((2.5 + 1.5) / 6)
    assert auroc([1, 1], [1, 1]) == 0.5
    assert auroc([5], [1, 2]) == 1.0


def test_fpr95_clip_convention_hand_computed():
    # 20 ID scores 1..20: accepting >= 95% (19 of 20) needs threshold 2.
    id_s = np.arange(1, 21, dtype=float)
    # OOD: 2 (tie with threshold, accepted), 1.5, 5, 30 -> accepted 2, 5, 30 -> 3/6
    ood_s = np.array([2.0, 1.5, 5.0, 30.0, 0.0, 1.99])
    assert fpr95(id_s, ood_s) == pytest.approx(3 / 6)
    # Ties inside ID: 10 copies of 1 and 10 of 2 -> the 19th largest is 1: all OOD >= 1 accepted
    id_t = np.r_[np.ones(10), 2 * np.ones(10)]
    assert fpr95(id_t, np.array([0.5, 1.0, 1.5, 3.0])) == pytest.approx(3 / 4)
    # 100 ID: the 95th largest of 0..99 is 5.
    assert fpr95(np.arange(100.0), np.array([4.99, 5.0, 6.0])) == pytest.approx(2 / 3)


def test_fpr95_openood_convention_matches_its_roc_curve_rule():
    rng = np.random.default_rng(7)
    id_s = np.round(rng.normal(1, 1, 200), 1)
    ood_s = np.round(rng.normal(0, 1, 150), 1)
    # OpenOOD: OOD positive with score -conf; FPR at the first ROC point reaching TPR 95%.
    y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    fpr, tpr, _ = roc_curve(y, -np.r_[id_s, ood_s])
    want = fpr[np.argmax(tpr >= 0.95)]
    assert fpr95(id_s, ood_s, "openood") == pytest.approx(want)
    # The CLIP convention mirrors it with ID as the positive class.
    fpr, tpr, _ = roc_curve(1 - y, np.r_[id_s, ood_s])
    assert fpr95(id_s, ood_s, "clip") == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    with pytest.raises(ValueError, match="convention"):
        fpr95(id_s, ood_s, "other")


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        auroc([1.0, np.nan], [0.0])
    with pytest.raises(ValueError, match="no scores"):
        fpr95([], [1.0])


def test_metrics_record_has_the_agreed_keys():
    rng = np.random.default_rng(0)
    id_s = rng.normal(2, 1, 100)
    benches = {"a": rng.normal(0, 1, 80), "b": rng.normal(1, 1, 60)}
    rec = metrics_record(
        model="m",
        idset="i",
        method="cm",
        testset="t",
        detector={"score": "eq1", "labels": "cm40", "params": {"tau_factor": 0.1}, "tau": 0.001},
        id_scores=id_s,
        benchmarks=benches,
    )
    assert set(rec) == {
        "model",
        "idset",
        "method",
        "testset",
        "score",
        "labels",
        "params",
        "tau",
        "fpr_convention",
        "benchmarks",
        "mean",
        "label_quality",
        "cluster_analysis",
    }
    assert set(rec["benchmarks"]["a"]) == {"auroc", "fpr95", "n_id", "n_ood"}
    assert rec["benchmarks"]["b"]["n_ood"] == 60
    for name in benches:
        assert 0 <= rec["benchmarks"][name]["auroc"] <= 1
    assert rec["mean"]["auroc"] == pytest.approx(
        np.mean([auroc(id_s, benches["a"]), auroc(id_s, benches["b"])])
    )
    assert rec["label_quality"] is None and rec["fpr_convention"] == "clip"
    assert evaluate_benchmarks(id_s, benches)["mean"] == rec["mean"]
    no_tau = metrics_record(
        model="m",
        idset="i",
        method="mcm",
        testset="t",
        detector={"score": "mcm", "labels": "none", "params": {}, "tau": "none"},
        id_scores=id_s,
        benchmarks=benches,
        convention="openood",
    )
    assert no_tau["tau"] is None and no_tau["labels"] is None
    assert no_tau["fpr_convention"] == "openood"


def test_overlap_and_f1():
    overlap, f1 = set_overlap(["Dog", "cat", "car", "tree"], ["dog", "golden_retriever"])
    assert overlap == 0.5
    assert f1 == pytest.approx(2 * 1 / (4 + 2))


def test_top1_text_similarity():
    pos = np.array([[1.0, 0.0], [0.0, 2.0]])
    gt = np.array([[1.0, 1.0], [1.0, 0.0]])
    assert top1_text_similarity(pos, gt) == pytest.approx((1.0 + np.sqrt(0.5)) / 2)


def test_wordnet_hops_equal_nltk_pairwise_minimum():
    from clustermine.wordnet import open_wordnet

    try:
        wn = open_wordnet()
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"WordNet unavailable: {err}")
    pos = ["dog.n.01", "cat.n.01", "car.n.01", "paris.n.01", "red.a.01"]
    gt = ["wolf.n.01", "truck.n.01"]
    got = wordnet_hops(pos + [None, "notasynset.n.01"], gt, wn)
    want = [min(wn.synset(p).shortest_path_distance(wn.synset(g)) for g in gt) for p in pos[:4]]
    assert got["mean"] == pytest.approx(np.mean(want))
    assert got["n_with_path"] == 4 and got["n_no_path"] == 1 and got["n_no_synset"] == 2
    assert got["per_label"] == [*want, None, None, None]  # red.a.01: no path; then no synsets


def test_label_quality_block():
    emb = np.eye(4)
    q = label_quality(["a", "b"], emb[:2], 7, 30, ["a", "c"], emb[[0, 2]])
    assert q == {
        "n_pos": 2,
        "n_neg": 7,
        "n_corpus": 30,
        "overlap": 0.5,
        "f1": 0.5,
        "top1_text_sim": 0.5,
        "wordnet_hops": None,
    }
    per_label = {}
    label_quality(["a", "b"], emb[:2], 7, 30, ["a", "c"], emb[[0, 2]], per_label=per_label)
    np.testing.assert_allclose(per_label["gt_sim"], [1.0, 0.0])
    assert np.isnan(per_label["gt_hops"]).all()  # no synsets given
    none = label_quality(["a"], emb[:1], 3, 30)
    assert none["overlap"] is None and none["n_pos"] == 1
