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
