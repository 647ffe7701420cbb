"""Label miners and label-set files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clustermine import catalog
from clustermine.corpus import normalize_name
from clustermine.labelsets import (
    LabelSetFileError,
    read_label_meta,
    read_label_set,
    sidecar_path,
    write_label_set,
)
from clustermine.mining import (
    MinerConfigError,
    MiningInputs,
    mine_labels,
    quantile_similarity,
)
from clustermine.mining.report import cluster_summary, quality_of

NAMES = ["Dog", "cat", "golden_retriever", "car", "tree", "house", "boat", "apple", "river", "sky"]


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    return NAMES, unit(rng.normal(size=(len(NAMES), 8))).astype(np.float32)


def test_normalize_name():
    assert normalize_name("  Golden_Retriever \t dog ") == "golden retriever dog"


def test_gt_matches_corpus_after_normalising(corpus):
    names, emb = corpus
    inputs = MiningInputs(names, emb, class_names=["dog", "Golden Retriever", "cat"])
    labels = mine_labels("gt", inputs)
    assert sorted(labels.positives.tolist()) == [0, 1, 2]
    assert sorted(labels.negatives.tolist()) == list(range(3, 10))
    assert labels.stats["gt_source"] == "corpus"


def test_gt_missing_class_is_an_error_unless_dropped(corpus):
    names, emb = corpus
    inputs = MiningInputs(names, emb, class_names=["dog", "zebra"])
    with pytest.raises(MinerConfigError, match="zebra.*missing_gt: drop"):
        mine_labels("gt", inputs)
    labels = mine_labels("gt", inputs, {"missing_gt": "drop"})
    assert labels.positives.tolist() == [0]
    assert labels.stats["gt_not_in_corpus"] == ["zebra"]


def test_gt_from_class_name_embeddings(corpus):
    """With the class names' own embeddings a class missing from the corpus is still Y_GT,
    and corpus rows bearing a Y_GT name never become negatives."""
    names, emb = corpus
    class_emb = unit(np.random.default_rng(1).normal(size=(3, 8))).astype(np.float32)
    inputs = MiningInputs(names, emb, class_names=["dog", "zebra", "DOG"], class_emb=class_emb)
    labels = mine_labels("gt", inputs)
    assert labels.positives.tolist() == []
    assert labels.class_positives.tolist() == [0, 1]  # "DOG" duplicates "dog"
    assert labels.pos_names == ["dog", "zebra"]
    assert 0 not in labels.negatives and len(labels.negatives) == 9
    pos_emb = labels.positive_embeddings(emb, class_emb)
    np.testing.assert_array_equal(pos_emb, class_emb[[0, 1]])


def test_miner_needing_class_names_without_them_is_a_config_error(corpus):
    names, emb = corpus
    for miner in ("gt", "neglabel", "gt_aug"):
        with pytest.raises(MinerConfigError, match="needs the ID class names"):
            mine_labels(miner, MiningInputs(names, emb))


def test_unknown_miner_and_parameter(corpus):
    names, emb = corpus
    with pytest.raises(MinerConfigError, match="known miners"):
        mine_labels("nope", MiningInputs(names, emb))
    with pytest.raises(MinerConfigError, match="min_votes"):
        mine_labels("gt", MiningInputs(names, emb, class_names=["dog"]), {"min_votes": 3})
    assert catalog.miner("clustermine").params_of(
        {"miner": "clustermine", "clusterer": "km", "C": 4, "negatives": "none"}
    ) == {"negatives": "none"}


def test_quantile_similarity_matches_numpy():
    rng = np.random.default_rng(2)
    cand, anchors = rng.normal(size=(57, 6)), rng.normal(size=(13, 6))
    want = np.quantile(unit(cand) @ unit(anchors).T, 0.95, axis=1)
    for budget in (64, 2**20):
        got = quantile_similarity(cand, anchors, 0.95, budget_bytes=budget, device="cpu")
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_neglabel_keeps_lowest_quantile_candidates():
    rng = np.random.default_rng(3)
    names = [f"w{i}" for i in range(200)]
    emb = unit(rng.normal(size=(200, 16))).astype(np.float32)
    inputs = MiningInputs(names, emb, class_names=names[:20])
    labels = mine_labels("neglabel", inputs, {"num_negatives": 30})
    assert labels.positives.tolist() == list(range(20))
    q = np.quantile(emb[20:].astype(np.float64) @ emb[:20].T.astype(np.float64), 0.95, axis=1)
    want = 20 + np.argsort(q, kind="stable")[:30]
    assert labels.negatives.tolist() == want.tolist()
    np.testing.assert_allclose(labels.neg_scores, np.sort(q)[:30], atol=1e-6)
    assert np.all(np.diff(labels.neg_scores) >= 0)


def test_posmine_counts_votes(corpus):
    names, emb = corpus
    top1 = np.array([0] * 5 + [3] * 3 + [4] * 5 + [9])
    labels = mine_labels("posmine", MiningInputs(names, emb, top1=top1), {"min_votes": 4})
    assert labels.positives.tolist() == [0, 4]
    assert labels.pos_votes.tolist() == [5, 5]
    np.testing.assert_allclose(labels.pos_scores, [5 / 14, 5 / 14])
    assert set(labels.negatives.tolist()) == set(range(10)) - {0, 4}
    with pytest.raises(MinerConfigError, match="lower min_votes"):
        mine_labels("posmine", MiningInputs(names, emb, top1=top1), {"min_votes": 6})


def test_posmine_with_a_fixed_number_of_positives(corpus):
    names, emb = corpus
    top1 = np.array([0] * 5 + [3] * 3 + [4] * 5 + [9] + [7] * 3)
    inputs = MiningInputs(names, emb, top1=top1)
    # The most voted first; 3 and 7 tie on 3 votes: corpus order keeps 3.
    labels = mine_labels("posmine", inputs, {"num_positives": 3})
    assert labels.positives.tolist() == [0, 3, 4]
    assert labels.params["num_positives"] == 3 and labels.params["min_votes"] is None
    assert mine_labels("posmine", inputs, {"num_positives": 5}).positives.tolist() == [0, 3, 4, 7, 9]
    with pytest.raises(MinerConfigError, match="num_positives must be in 1..5"):
        mine_labels("posmine", inputs, {"num_positives": 6})


def test_posmine_computes_zero_shot_from_images(corpus):
    names, emb = corpus
    images = np.repeat(emb[[2, 5]], 3, axis=0) * 3.0  # unnormalised on purpose
    labels = mine_labels("posmine", MiningInputs(names, emb, image_emb=images), {"min_votes": 3})
    assert labels.positives.tolist() == [2, 5]


def test_clustermine_majority_vote(corpus):
    names, emb = corpus
    #           cluster 0: 1,1,2  cluster 1: 3,3,1  cluster 2: 5,6 (tie -> 5)  cluster 3: 1
    assign = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, -1])
    top1 = np.array([1, 1, 2, 3, 3, 1, 6, 5, 1, 8])
    labels = mine_labels("clustermine", MiningInputs(names, emb, top1=top1, assignments=assign))
    assert labels.positives.tolist() == [1, 3, 5]
    assert labels.pos_votes.tolist() == [2, 1, 1]
    np.testing.assert_allclose(labels.pos_scores, [(2 / 3 + 1) / 2, 2 / 3, 1 / 2])
    assert sorted(labels.negatives.tolist()) == [0, 2, 4, 6, 7, 8, 9]
    summary = cluster_summary(MiningInputs(names, emb, top1=top1, assignments=assign), 5)
    assert summary["C"] == 5
    assert summary["ypos_over_C"] == pytest.approx(3 / 5)
    assert summary["redundancy"] == pytest.approx(1 / 3)
    assert summary["purity"] == pytest.approx(6 / 9)
    assert "nmi" not in summary  # no ground truth given
    # Ground truth equal to the clusters (up to renaming; -1 unknown): perfect agreement.
    truth = np.array([7, 7, 7, 4, 4, 4, 2, 2, 0, -1])
    with_gt = cluster_summary(MiningInputs(names, emb, top1=top1, assignments=assign), 5, truth)
    assert with_gt["nmi"] == pytest.approx(1.0) and with_gt["ari"] == pytest.approx(1.0)
    assert with_gt["hungarian_accuracy"] == pytest.approx(1.0)
    assert with_gt["purity"] == summary["purity"]


def test_clustermine_dissimilar_negatives(corpus):
    names, emb = corpus
    assign, top1 = np.array([0, 0, 1, 1]), np.array([1, 1, 3, 3])
    inputs = MiningInputs(names, emb, top1=top1, assignments=assign)
    labels = mine_labels("clustermine", inputs, {"negatives": "dissimilar", "num_negatives": 3})
    q = np.quantile(emb.astype(np.float64) @ emb[[1, 3]].T.astype(np.float64), 0.95, axis=1)
    cand = np.array([0, 2, 4, 5, 6, 7, 8, 9])
    assert labels.negatives.tolist() == cand[np.argsort(q[cand], kind="stable")[:3]].tolist()


def test_clustermine_needs_matching_assignments(corpus):
    names, emb = corpus
    with pytest.raises(MinerConfigError, match="different datasets"):
        mine_labels(
            "clustermine", MiningInputs(names, emb, top1=np.zeros(4), assignments=np.zeros(3))
        )
    with pytest.raises(MinerConfigError, match="cluster assignments"):
        mine_labels("clustermine", MiningInputs(names, emb, top1=np.zeros(4)))


def test_gt_aug_adds_most_similar_names():
    rng = np.random.default_rng(4)
    base = unit(rng.normal(size=(3, 16)))
    near = unit(base + 0.1 * rng.normal(size=(3, 16)))
    far = unit(rng.normal(size=(20, 16)))
    emb = np.concatenate([base, far, near]).astype(np.float32)
    names = [f"w{i}" for i in range(len(emb))]
    labels = mine_labels("gt_aug", MiningInputs(names, emb, class_names=names[:3]), {"num_aug": 3})
    assert labels.positives[:3].tolist() == [0, 1, 2]
    assert sorted(labels.positives[3:].tolist()) == [23, 24, 25]
    assert len(labels.negatives) == 20


def test_label_set_file_round_trip(tmp_path, corpus):
    names, emb = corpus
    class_emb = unit(np.random.default_rng(1).normal(size=(2, 8))).astype(np.float32)
    inputs = MiningInputs(names, emb, class_names=["cat", "zebra"], class_emb=class_emb)
    labels = mine_labels("gt_aug", inputs, {"num_aug": 2})
    path = tmp_path / "labels" / "id.aug.tsv"
    write_label_set(path, labels, {"label_quality": quality_of(labels, inputs)})
    header = path.read_text().splitlines()[0]
    assert header == "index\tname\trole\tsource\tvotes\tscore"
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["miner"] == "gt_aug" and meta["stats"]["n_pos"] == 4
    assert meta["label_quality"]["overlap"] == 1.0
    back = read_label_set(path, names, ["cat", "zebra"])
    np.testing.assert_array_equal(back.positives, labels.positives)
    np.testing.assert_array_equal(back.negatives, labels.negatives)
    np.testing.assert_array_equal(back.class_positives, labels.class_positives)
    np.testing.assert_allclose(back.pos_scores, labels.pos_scores, rtol=1e-5)
    assert back.pos_names == labels.pos_names
    assert read_label_meta(path)["params"]["num_aug"] == 2
    # With the per-positive quality columns: filled on positives, empty on negatives.
    per_label = {}
    quality_of(labels, inputs, per_label)
    assert per_label["gt_sim"].shape == (labels.n_pos,)
    np.testing.assert_allclose(per_label["gt_sim"][:2], 1.0, rtol=1e-5)  # Y_GT itself
    write_label_set(path, labels, {}, per_label)
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    assert rows[0][6:] == ["gt_sim", "gt_hops"]
    pos = [r for r in rows[1:] if r[2] == "pos"]
    assert all(r[6] for r in pos) and all(r[6] == r[7] == "" for r in rows[1:] if r[2] == "neg")
    assert all(r[7] == "" for r in pos)  # no synsets in this corpus: no hops
    again = read_label_set(path, names, ["cat", "zebra"])
    np.testing.assert_array_equal(again.positives, labels.positives)
    with pytest.raises(LabelSetFileError, match="does not match"):
        read_label_set(path, names[::-1], ["cat", "zebra"])
    with pytest.raises(LabelSetFileError, match="class names"):
        read_label_set(path, names)
