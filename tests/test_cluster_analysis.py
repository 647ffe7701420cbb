import math

import numpy as np
import pytest

from clustermine import cluster_analysis as ca

# Three clusters; zero-shot labels 5, 7, 9. Cluster 2 ties between 5 and 9 (lower wins).
A = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
Z = np.array([5, 5, 7, 7, 7, 5, 5, 9, 9])


def test_majority_vote_and_purity():
    ids, label, count, size = ca.majority_vote(A, Z)
    assert ids.tolist() == [0, 1, 2]
    assert label.tolist() == [5, 7, 5]
    assert count.tolist() == [2, 2, 2] and size.tolist() == [3, 2, 4]
    assert ca.purity(A, Z) == pytest.approx(6 / 9)


def test_mean_entropy_in_nats():
    h0 = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    expected = 3 / 9 * h0 + 2 / 9 * 0.0 + 4 / 9 * math.log(2)
    assert ca.mean_entropy(A, Z) == pytest.approx(expected)
    assert ca.mean_entropy(A, A) == pytest.approx(0.0)


def test_ypos_redundancy_and_ratio():
    ypos, votes = ca.voted_labels(A, Z)
    assert ypos.tolist() == [5, 7] and votes.tolist() == [2, 1]
    assert ca.redundancy(A, Z) == pytest.approx(0.5)
    assert ca.ypos_per_cluster(A, Z) == pytest.approx(2 / 3)
    assert ca.ypos_per_cluster(A, Z, num_clusters=4) == pytest.approx(0.5)


def test_hungarian_accuracy_with_permuted_labels_and_unequal_counts():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    gt = np.array([2, 2, 0, 0, 1, 1, 0])  # a permutation of the clusters, one error
    assert ca.hungarian_accuracy(a, gt) == pytest.approx(6 / 7)
    # More clusters than classes: only two clusters can be matched.
    assert ca.hungarian_accuracy([0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 0, 1, 1, 1, 1]) == 0.5
    # More classes than clusters.
    assert ca.hungarian_accuracy([0, 0, 0, 0], [0, 1, 2, 2]) == 0.5
    # Non-contiguous ids are fine.
    assert ca.hungarian_accuracy([10, 10, 40], [3, 3, 900]) == 1.0


def test_nmi_ari_ignore_unknown_ground_truth():
    a = np.array([0, 0, 1, 1, 2, 2])
    gt = np.array([1, 1, 2, 2, 0, -1])
    assert ca.nmi(a, gt) == pytest.approx(1.0)
    assert ca.ari(a, gt) == pytest.approx(1.0)
    assert ca.hungarian_accuracy(a, gt) == 1.0
    assert ca.ari(a, [0, 1, 0, 1, 0, 1]) < 0.1


def test_cluster_report():
    gt = np.array([0, 0, 0, 1, 1, 2, 2, 2, -1])
    rep = ca.cluster_report(A, Z, gt, num_clusters=3)
    assert rep["num_samples"] == 9 and rep["nonempty_clusters"] == 3
    assert (rep["min_size"], rep["max_size"]) == (2, 4)
    assert rep["num_ypos"] == 2 and rep["redundancy"] == 0.5
    assert rep["purity"] == pytest.approx(6 / 9)
    assert rep["hungarian_accuracy"] == 1.0 and rep["nmi"] == pytest.approx(1.0)
    assert "nmi" not in ca.cluster_report(A, Z, np.full(9, -1))


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="9 cluster assignments but 3 labels"):
        ca.purity(A, Z[:3])


def test_elbow_and_sweep():
    xs = [1, 2, 4, 8, 16, 32]
    assert ca.elbow(xs, [min(x, 8) for x in xs]) == 8
    rng = np.random.default_rng(0)
    z = rng.integers(6, size=400)
    sweep = {c: rng.integers(c, size=400) for c in (2, 40, 5, 10)}
    sweep[40] = z * 5 + rng.integers(5, size=400)  # refines z: every cluster votes its label
    rows, knee = ca.sweep_report(sweep, z)
    assert [r["C"] for r in rows] == [2, 5, 10, 40]
    assert rows[-1]["purity"] == 1.0 and rows[-1]["num_ypos"] == 6
    assert rows[-1]["redundancy"] == 1.0 and rows[-1]["ypos_per_cluster"] == 6 / 40
    assert knee in (5, 10, 40)
    with pytest.raises(ValueError, match="at least 3"):
        ca.elbow([1, 2], [1, 2])


def test_overclustering_accuracy_maps_extra_clusters_to_their_majority_class():
    a = [0, 0, 1, 1, 2, 2, 3, 3]
    gt = [0, 0, 0, 0, 1, 1, 1, 1]
    assert ca.hungarian_accuracy(a, gt) == 0.5  # only two clusters can be matched
    assert ca.overclustering_accuracy(a, gt) == 1.0  # the other two join their majority
    # C = K: the one-to-one match, not the majority vote (purity would be 7/9).
    a = [0, 0, 0, 0, 0, 1, 1, 1, 1]
    gt = [0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert ca.purity(a, gt) == pytest.approx(7 / 9)
    assert ca.overclustering_accuracy(a, gt) == pytest.approx(6 / 9)
    assert ca.hungarian_accuracy(a, gt) == pytest.approx(6 / 9)


def test_overclustering_accuracy_lies_between_hungarian_and_purity():
    rng = np.random.default_rng(0)
    for c, k in ((3, 5), (5, 5), (12, 4)):
        y = rng.integers(k, size=300)
        a = (y * c // k + rng.integers(0, 2, size=300)) % c  # related, not equal
        hung, over = ca.hungarian_accuracy(a, y), ca.overclustering_accuracy(a, y)
        assert hung <= over + 1e-12 and over <= ca.purity(a, y) + 1e-12
        if c <= k:
            assert over == pytest.approx(hung)


def test_class_imbalance_view():
    # One cluster swallows an 8-sample class and a 2-sample class.
    a = np.zeros(10, dtype=int)
    gt = np.array([0] * 8 + [1] * 2)
    assert ca.overclustering_accuracy(a, gt) == pytest.approx(0.8)
    assert ca.per_class_accuracy(a, gt) == pytest.approx((1.0 + 0.0) / 2)
    assert ca.class_coverage(a, gt) == 0.5
    # Split right, each class owns a cluster; unknown labels are left out.
    a = np.array([0] * 8 + [1] * 2 + [1])
    gt = np.append(gt, -1)
    assert ca.per_class_accuracy(a, gt) == 1.0 and ca.class_coverage(a, gt) == 1.0
    agreement = ca.ground_truth_agreement(a, gt)
    assert agreement["num_classes"] == 2 and agreement["overclustering_accuracy"] == 1.0
    assert set(agreement) >= {"nmi", "ari", "hungarian_accuracy", "per_class_accuracy",
                              "class_coverage"}


def test_size_statistics():
    balanced = np.repeat(np.arange(8), 5)
    stats = ca.size_statistics(balanced, 10)  # two clusters empty
    assert (stats["nonempty_clusters"], stats["empty_clusters"]) == (8, 2)
    assert stats["size_entropy"] == pytest.approx(math.log(8))
    assert stats["size_entropy_ratio"] == pytest.approx(math.log(8) / math.log(10))
    assert stats["largest_share"] == pytest.approx(1 / 8) and stats["clusters_for_half"] == 4
    assert not ca.is_concentrated(stats)


@pytest.mark.parametrize(
    "sizes, concentrated",
    [
        ([100] + [0] * 39, True),  # collapsed into one cluster
        ([30, 30] + [1] * 38, True),  # 61% in 2 of 40 clusters
        ([5] * 40, False),
        ([60, 40], False),  # C = 2: one cluster always holds half
        ([100, 0], True),
        ([10] * 3 + [1] * 7, False),  # C = 10: 3 clusters for half
        ([50] + [5] * 9, True),  # C = 10: one cluster holds half
    ],
)
def test_concentration(sizes, concentrated):
    a = np.repeat(np.arange(len(sizes)), sizes)
    assert ca.is_concentrated(ca.size_statistics(a, len(sizes))) == concentrated
    health = ca.clustering_health(a, len(sizes))
    assert ("concentrated" in health["warnings"]) == concentrated
    assert len(health["messages"]) == len(health["warnings"])


def test_temi_health_compares_the_loss_with_uniform_outputs():
    a = np.repeat(np.arange(40), 5)
    uniform = ca.uniform_temi_loss(40, 0.6)
    assert uniform == pytest.approx(-0.8 * math.log(40) / 40)
    stuck = ca.clustering_health(a, 40, best_head_loss=1.3 * uniform, beta=0.6,
                                 teacher_max_prob=0.03, epochs=30, warmup_epochs=5)
    assert stuck["warnings"] == ["not_learned"] and stuck["loss_ratio"] == pytest.approx(1.3)
    assert "stayed near uniform" in stuck["messages"][0]
    learned = ca.clustering_health(a, 40, best_head_loss=8 * uniform, beta=0.6,
                                   teacher_max_prob=0.7, epochs=30, warmup_epochs=5)
    assert learned["warnings"] == [] and learned["uniform_loss"] == pytest.approx(uniform)
    warm = ca.clustering_health(a, 40, best_head_loss=8 * uniform, beta=0.6, epochs=5,
                                warmup_epochs=5)
    assert warm["warnings"] == ["all_warmup"]
    kmeans = ca.clustering_health(a, 40, iterations=12, max_iter=100)
    assert kmeans["warnings"] == [] and kmeans["iterations"] == 12
