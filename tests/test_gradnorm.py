"""GradNorm positive filtering and language-assisted clustering against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import planted_clusters
from sklearn.metrics import normalized_mutual_info_score as nmi

from clustermine.clustering import ClusterConfigError, fit_clusters
from clustermine.clustering.language_assisted import retrieve_text
from clustermine.h5io import TextEmbeddings
from clustermine.mining import MiningInputs, mine_labels
from clustermine.mining.gradnorm import cluster_prototypes, gradient_norms, select_per_cluster


pytestmark = pytest.mark.usefixtures("one_thread")


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_prototypes_are_normalised_cluster_means():
    images = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 0.0]])
    protos, ids = cluster_prototypes(images, np.array([0, 0, 2, 0]), 4)
    assert ids.tolist() == [0, 2]  # clusters 1 and 3 are empty: no prototype
    np.testing.assert_allclose(protos[0], unit(np.array([2.0, 1.0])), rtol=1e-6)
    np.testing.assert_allclose(protos[1], unit(np.array([1.0, 1.0])), rtol=1e-6)


def test_gradient_norm_by_hand():
    protos = unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    texts = np.array([[3.0, 0.0], [1.0, 2.0], [-1.0, 0.2]])  # normalised inside
    pred, grad = gradient_norms(texts, protos, 0.5, budget_bytes=64, device="cpu")  # 2 rows/block
    t = unit(texts)
    z = t @ protos.T / 0.5
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[p.argmax(1)]
    assert pred.tolist() == p.argmax(1).tolist() == [0, 2, 1]
    np.testing.assert_allclose(grad, np.linalg.norm(p - onehot, axis=1), rtol=1e-6)
    # The first text sits on prototype 0 but prototype 2 is close: G = ‖p − e_0‖ by hand.
    z0 = np.array([2.0, 0.0, 2 / np.sqrt(2)])
    p0 = np.exp(z0) / np.exp(z0).sum()
    assert grad[0] == pytest.approx(np.sqrt((1 - p0[0]) ** 2 + p0[1] ** 2 + p0[2] ** 2), rel=1e-6)


def test_each_cluster_keeps_its_top_k_smallest():
    pred = np.array([0, 0, 0, 1, 1, 2, 0])
    grad = np.array([0.5, 0.1, 0.5, 0.9, 0.2, 0.7, 0.05])
    # Cluster 0: rows 6 (0.05), 1 (0.1), then rows 0 and 2 tie at 0.5 → the lower row, 0.
    assert select_per_cluster(pred, grad, 3).tolist() == [0, 1, 3, 4, 5, 6]
    assert select_per_cluster(pred, grad, 1).tolist() == [4, 5, 6]


def planted_world(seed=0, concepts=8, names=400, dim=32):
    rng = np.random.default_rng(seed)
    texts = unit(rng.normal(size=(names, dim))).astype(np.float32)
    planted = rng.permutation(names)[:concepts]
    y = np.repeat(np.arange(concepts), 60)
    offset = 0.6 * unit(rng.normal(size=dim))
    x = texts[planted[y]] + offset + 0.15 * rng.normal(size=(len(y), dim))
    return texts, planted, x.astype(np.float32), y


def gradnorm_positives(x, texts, num_clusters, top_k, temperature=0.02):
    assign = fit_clusters("kmeans", x, num_clusters, {"seed": 0}, device="cpu").assignments
    names = [f"name {i}" for i in range(len(texts))]
    inputs = MiningInputs(names, texts, image_emb=x, assignments=assign, device="cpu")
    return mine_labels("gradnorm", inputs, {"temperature": temperature, "top_k": top_k})


def test_gradnorm_mines_the_planted_concepts():
    texts, planted, x, y = planted_world()
    labels = gradnorm_positives(x, texts, 8, top_k=1)
    assert set(labels.positives.tolist()) == set(planted.tolist())
    assert labels.stats["n_prototypes"] == 8
    assert (labels.pos_scores >= 0).all() and (labels.pos_scores < np.sqrt(2)).all()
    # Over-clustered (two clusters per concept), a concept's name sits between two sibling
    # prototypes, its softmax is split and its G is large: names owned by one cluster win.
    # A property of the method, measured here so that it is known (docs/methods.md).
    over = gradnorm_positives(x, texts, 16, top_k=1)
    assert len(set(over.positives.tolist()) & set(planted.tolist())) <= 2


def test_retrieved_text_by_hand():
    t = unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    x = np.array([[1.0, 0.0], [1.0, 1.0]])
    r = retrieve_text(x, t, tau_r=0.5, budget_bytes=8, device="cpu")
    w = np.exp(np.array([1.0, 0.0]) / 0.5)
    np.testing.assert_allclose(r[0], unit(w / w.sum() @ t), rtol=1e-6)
    np.testing.assert_allclose(r[1], unit(np.array([1.0, 1.0])), rtol=1e-6)  # equal weights


def test_language_assisted_clustering_finds_the_concepts():
    texts, planted, x, y = planted_world(seed=1)
    names = TextEmbeddings(texts[planted], [f"name {i}" for i in planted])
    kept = x.copy()
    result = fit_clusters("language_assisted", x, 8, {"tau_r": 0.05, "n_init": 3},
                          device="cpu", texts=names, copy=False)  # fmt: skip
    np.testing.assert_array_equal(x, kept)  # the joint rows are its own: x is left as it was
    assert result.clusterer == "language_assisted" and result.params["tau_r"] == 0.05
    assert nmi(y, result.assignments) > 0.95
    with pytest.raises(ClusterConfigError, match="needs the filtered names"):
        fit_clusters("language_assisted", x, 8, {})
    wrong = TextEmbeddings(np.ones((2, 5), np.float32), ["a", "b"])
    with pytest.raises(ClusterConfigError, match="differ in dimension"):
        fit_clusters("language_assisted", x, 8, {}, texts=wrong)
