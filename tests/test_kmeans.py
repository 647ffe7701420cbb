import h5py
import numpy as np
import pytest
import torch
from helpers import planted_clusters
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score as nmi

from clustermine.clustering import ClusterConfigError, ClusterResult, fit_clusters
from clustermine.clustering.io import read_cluster_attrs, read_clusters, write_clusters
from clustermine.clustering.files import cluster_files
from clustermine.clustering.kmeans import TooManyClusters, fit_kmeans
from clustermine.clustering.seeding import (
    Distances,
    kmeans_parallel,
    kmeans_plus_plus,
    parallel_candidates,
)
from clustermine.h5io import ImageEmbeddings, write_image_embeddings


def blobs(n=1200, c=8, d=5, seed=0):
    """Overlapping Gaussian blobs: k-means has real work to do."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(c, d))
    y = rng.integers(c, size=n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_spherical_kmeans_recovers_planted_clusters():
    x, y = planted_clusters(n=1500)
    result = fit_kmeans(x, 10, device="cpu")
    assert nmi(y, result.assignments) >= 0.9
    assert result.clusterer == "kmeans" and result.head_losses.shape == (1,)
    # Cosine inertia is Σ (1 - cos) to the assigned (normalised) centre.
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    centres = np.stack([u[result.assignments == c].sum(0) for c in range(10)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    inertia = (1 - (u * centres[result.assignments]).sum(1)).sum()
    assert result.head_losses[0] == pytest.approx(inertia, rel=1e-4)


def test_euclidean_kmeans_matches_scikit_learn():
    x, _ = blobs()
    ours = fit_kmeans(
        x, 8, {"metric": "euclidean", "n_init": 3, "max_iter": 300, "tol": 0}, device="cpu"
    )
    ref = KMeans(8, n_init=10, random_state=0).fit(x)
    assert ours.head_losses[0] <= ref.inertia_ * 1.02
    assert nmi(ref.labels_, ours.assignments) >= 0.9
    # Our inertia is the true sum of squared distances to the members' means.
    centres = np.stack([x[ours.assignments == c].mean(0) for c in range(8)])
    sse = ((x - centres[ours.assignments]) ** 2).sum()
    assert ours.head_losses[0] == pytest.approx(sse, rel=1e-4)


def test_spherical_matches_scikit_learn_on_normalised_rows():
    x, _ = planted_clusters(n=1500, noise=0.12, seed=3)
    ref = KMeans(10, n_init=10, random_state=0).fit(x / np.linalg.norm(x, axis=1, keepdims=True))
    ours = fit_kmeans(x, 10, {"n_init": 3}, device="cpu")
    assert nmi(ref.labels_, ours.assignments) >= 0.95


def test_chunking_and_seed_do_not_change_the_result():
    x, _ = blobs(seed=1)
    big = fit_kmeans(x, 8, {"metric": "euclidean", "seed": 4}, device="cpu")
    small = fit_kmeans(
        x, 8, {"metric": "euclidean", "seed": 4}, device="cpu", budget_bytes=16 * 8 * 50
    )  # 50 rows per chunk
    np.testing.assert_array_equal(big.assignments, small.assignments)
    again = fit_kmeans(x, 8, {"metric": "euclidean", "seed": 4}, device="cpu")
    np.testing.assert_array_equal(big.assignments, again.assignments)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_in_place_normalisation_gives_the_same_clusters(backend):
    # copy=False (what the cluster job passes) normalises the rows where they lie instead of
    # in a second copy of the data: the same clusters to the bit, the input overwritten.
    x, _ = planted_clusters(n=600)
    kept = x.copy()
    params = {"backend": backend, "seed": 2}
    a = fit_kmeans(x, 10, params, device="cpu")
    np.testing.assert_array_equal(x, kept)  # the default works on a copy
    b = fit_clusters("kmeans", x, 10, params, device="cpu", copy=False)
    np.testing.assert_array_equal(a.assignments, b.assignments)
    assert a.head_losses[0] == b.head_losses[0]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(x, kept / np.linalg.norm(kept, axis=1, keepdims=True), rtol=1e-6)


def test_kmeans_plus_plus_spreads_seeds():
    x, y = planted_clusters(n=500, noise=0.02)
    dist = Distances(torch.nn.functional.normalize(torch.from_numpy(x), dim=1), "cosine", 2**20)
    seeds = kmeans_plus_plus(dist, 10, torch.Generator().manual_seed(0), None)
    assert len(set(y[seeds.numpy()])) == 10  # one seed in every planted cluster


def _unit_distances(x, backend="torch"):
    return Distances(torch.nn.functional.normalize(torch.from_numpy(x), dim=1), "cosine", 2**20,
                      backend)  # fmt: skip


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_kmeans_parallel_spreads_seeds_like_kmeans_plus_plus(backend):
    """k-means‖ (a few rounds of independent sampling, then weighted k-means++ on the
    samples) also puts one seed in every planted cluster, and its Lloyd ends where
    k-means++'s does."""
    x, y = planted_clusters(n=2000, c=20, noise=0.05, seed=4)
    seeds = kmeans_parallel(_unit_distances(x, backend), 20, torch.Generator().manual_seed(0), None)
    assert len(set(seeds.tolist())) == 20 and len(set(y[seeds.numpy()])) == 20
    again = kmeans_parallel(_unit_distances(x, backend), 20, torch.Generator().manual_seed(0), None)
    assert torch.equal(seeds, again)
    plus = fit_kmeans(x, 20, {"seed": 1}, device="cpu")
    parallel = fit_kmeans(x, 20, {"init": "kmeans||", "seed": 1, "backend": backend},
                          device="cpu")  # fmt: skip
    assert nmi(y, parallel.assignments) >= 0.95 and parallel.params["init"] == "kmeans||"
    assert parallel.head_losses[0] <= 1.05 * plus.head_losses[0]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmeans_parallel_keeps_each_row_with_the_papers_probability(metric):
    """One round of k-means‖ (Bahmani et al., 2012, Alg. 2) keeps each row independently with
    probability min(1, ℓ·d²(x)/φ), φ = Σ d²: re-derived here in numpy from the first row, and
    compared over 1,000 seeded rounds with how often each row was kept. An outlier reaches
    the clamp at 1; squared distances, not distances, decide (a d-proportional rule misses
    the counts by far more than the tolerance)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.15, (20, 3)) + [1, 0, 0], [[-4.0, 0.5, 0.0]]])
    x = x.astype(np.float32)
    if metric == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    dist = Distances(torch.from_numpy(x), metric, 2**20)
    ell, seeds = 2.0, 1000
    kept = np.zeros(len(x))
    expected, variance = np.zeros(len(x)), np.zeros(len(x))
    for seed in range(seeds):
        mask = parallel_candidates(dist, ell, 1, torch.Generator().manual_seed(seed)).numpy()
        first = int(torch.randint(len(x), (1,), generator=torch.Generator().manual_seed(seed)))
        d2 = ((x - x[first]) ** 2).sum(1).astype(np.float64)  # 2(1 - cos) for unit rows
        p = np.minimum(1.0, ell * d2 / d2.sum())
        p[first] = 1.0
        kept += mask
        expected += p
        variance += p * (1 - p)
    np.testing.assert_array_less(np.abs(kept - expected), 5 * np.sqrt(variance) + 1)
    # The outlier: ℓ·d²/φ > 1 from every first row, so kept in every round.
    assert expected[-1] == kept[-1] == seeds
    assert kept.sum() < 5 * seeds  # about 1 + ℓ rows a round, not all


def test_weighted_kmeans_plus_plus_counts_a_weight_as_that_many_copies():
    """A row of weight w stands for w rows: the first centre is drawn in proportion to the
    weights and every candidate is judged by the weighted total."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    dist = _unit_distances(x)
    firsts = [int(kmeans_plus_plus(dist, 1, torch.Generator().manual_seed(s), None,
                                   torch.tensor([1, 0, 998]))[0])
              for s in range(200)]  # fmt: skip
    assert firsts.count(1) == 0 and firsts.count(2) >= 195
    # Two heavy rows and two light ones: the heavy pair are the two centres, as they would be
    # if each stood for 1000 copies; unweighted, the second centre is as often a light row.
    y = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=np.float32)

    def pairs(weights):
        return [set(kmeans_plus_plus(_unit_distances(y), 2, torch.Generator().manual_seed(s),
                                     1, weights).tolist()) for s in range(100)]  # fmt: skip

    assert pairs(torch.tensor([1.0, 1.0, 1000.0, 1000.0])).count({2, 3}) >= 98
    assert pairs(None).count({2, 3}) <= 60


def test_kmeans_parallel_with_few_distinct_rows_and_c_near_n():
    x = np.array([[1.0, 0.0]] * 30 + [[0.0, 1.0]] * 2, dtype=np.float32)
    seeds = kmeans_parallel(_unit_distances(x), 5, torch.Generator().manual_seed(0), None)
    assert len(set(seeds.tolist())) == 5 and {0, 1} <= {int(r >= 30) for r in seeds}
    x, _ = planted_clusters(n=40, c=4, seed=2)
    result = fit_kmeans(x, 40, {"init": "kmeans||"}, device="cpu")
    assert sorted(result.assignments.tolist()) == list(range(40))


def test_seeding_from_a_sample_of_rows():
    """k-means++ on a seeded sample (what keeps C = 4000 on 1.28M rows fast), Lloyd on all."""
    x, y = planted_clusters(n=3000, seed=5)
    sampled = fit_kmeans(x, 10, {"init_size": 200, "seed": 2}, device="cpu")
    assert nmi(y, sampled.assignments) >= 0.9 and len(sampled) == 3000
    parallel = fit_kmeans(x, 10, {"init_size": 200, "seed": 2, "init": "kmeans||"},
                          device="cpu")  # fmt: skip
    assert nmi(y, parallel.assignments) >= 0.9
    again = fit_kmeans(x, 10, {"init_size": 200, "seed": 2}, device="cpu")
    np.testing.assert_array_equal(sampled.assignments, again.assignments)
    assert sampled.params["init_size"] == 200
    with pytest.raises(ClusterConfigError, match="init_size"):
        fit_kmeans(x, 10, {"init_size": 5}, device="cpu")


def test_duplicates_and_empty_clusters():
    x = np.array([[1.0, 0.0]] * 8 + [[0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    result = fit_kmeans(x, 4, device="cpu")
    assert result.assignments.min() >= 0 and result.assignments.max() < 4
    assert result.head_losses[0] == pytest.approx(0.0, abs=1e-6)
    assert len(set(result.assignments[:8])) == 1


def test_bad_input():
    with pytest.raises(ClusterConfigError, match="metric"):
        fit_kmeans(np.zeros((5, 2), np.float32), 2, {"metric": "manhattan"})
    with pytest.raises(TooManyClusters, match=r"^kmeans: C=5 > N=3 images: more clusters "):
        fit_kmeans(np.zeros((3, 2), np.float32), 5)
    with pytest.raises(ClusterConfigError, match=r"\[N, D\], got shape \(6,\)"):
        fit_kmeans(np.zeros(6, np.float32), 2)


@pytest.mark.parametrize("method", ["kmeans", "temi"])
def test_more_clusters_than_images_names_where_c_comes_from(tmp_path, method):
    """The cluster job knows the clusterer and C, not which label set or sweep asked for
    them: its error names the dataset, C and N, and the config keys that set C."""
    x, _ = planted_clusters(n=30)
    images = tmp_path / "results/m/images/fmnist-train.h5"
    write_image_embeddings(images, ImageEmbeddings(
        x, np.full(30, -1), [f"{i}.png" for i in range(30)],
        attrs={"model_arch": "ViT-B-32", "model_pretrained": "openai",
               "dataset": "fmnist-train"}))  # fmt: skip
    out = tmp_path / "results/m/clusters/fmnist-train.small-C40.h5"
    with pytest.raises(TooManyClusters) as err:
        cluster_files(method, {}, 40, images=images, out=out, slug="small", device="cpu")
    message = str(err.value)
    assert message.startswith(
        f"config: clusterers.small with C=40 asks for more clusters than the 30 images of "
        f"dataset fmnist-train ({images}) (C=40 > N=30)."), message
    for part in ("label_sets.<slug>.C", "idsets.<idset>.cluster_sweep.small",
                 "clusterers.small with C=40: lower it there to at most 30"):
        assert part in message, part
    assert (err.value.num_clusters, err.value.num_samples) == (40, 30)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_registry_and_cluster_file_round_trip(tmp_path):
    x, _ = planted_clusters(n=300)
    result = fit_clusters("kmeans", x, 10, {"method": "kmeans", "seed": 2}, device="cpu")
    assert result.params["seed"] == 2 and result.seed == 2
    path = tmp_path / "clusters" / "d.kmeans-C10.h5"
    model = {"model_arch": "ViT-B-32", "model_pretrained": "openai", "dataset": "d"}
    write_clusters(path, result, {**model, "source": "images/d.h5"})
    back = read_clusters(path)
    np.testing.assert_array_equal(back.assignments, result.assignments)
    np.testing.assert_array_equal(back.sizes, result.sizes)
    np.testing.assert_array_equal(back.loss_history, result.loss_history)
    assert (back.num_clusters, back.clusterer, back.best_head, back.seed) == (10, "kmeans", 0, 2)
    assert back.params == result.params
    assert back.attrs["model_arch"] == "ViT-B-32" and back.attrs["source"] == "images/d.h5"
    # The health record: size statistics and the iterations Lloyd used.
    assert back.health == result.health and back.warnings == []
    assert back.health["iterations"] == len(result.loss_history) <= result.params["max_iter"]
    assert back.health["nonempty_clusters"] == 10 and back.second_assignments is None
    assert read_cluster_attrs(path)["health"] == result.health
    with h5py.File(path, "r") as f:
        assert f["assignments"].dtype == np.int64 and f["sizes"].shape == (10,)
        assert f.attrs["clusterer"] == "kmeans" and f.attrs["num_clusters"] == 10
    assert not list(path.parent.glob("*.tmp"))


def test_cluster_files_keep_the_second_choice_and_read_when_older(tmp_path):
    a = np.array([0, 1, 2, 2])
    result = ClusterResult(a, 3, "temi", np.zeros(2), second_assignments=[1, 2, 0, 1],
                           health={"warnings": ["not_learned"], "messages": ["m"]})
    write_clusters(tmp_path / "new.h5", result)
    back = read_clusters(tmp_path / "new.h5")
    np.testing.assert_array_equal(back.second_assignments, [1, 2, 0, 1])
    assert back.warnings == ["not_learned"]
    with pytest.raises(ValueError, match="second_assignments must lie"):
        ClusterResult(a, 3, "temi", np.zeros(2), second_assignments=[1, 2, 0, 3])
    # A file written before the health check: no health, no second choice.
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f["assignments"], f["head_losses"] = a, np.zeros(1)
        f.attrs.update(kind="clusters", clusterer="kmeans", num_clusters=3)
    old = read_clusters(tmp_path / "old.h5")
    assert old.health == {} and old.second_assignments is None and old.warnings == []
    assert read_cluster_attrs(tmp_path / "old.h5")["health"] == {}


def test_cluster_file_is_not_written_on_failure(tmp_path):
    path = tmp_path / "c.h5"
    bad = ClusterResult(np.zeros(3), 2, "kmeans", np.zeros(1))
    bad.assignments = np.array([0, 1, 7])  # corrupted after construction
    with pytest.raises(ValueError):
        write_clusters(path, bad)
    assert not path.exists() and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="out of range|must lie"):
        ClusterResult(np.array([0, 3]), 2, "kmeans", np.zeros(1))


def test_read_clusters_rejects_other_files(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["embeddings"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="not a cluster file"):
        read_clusters(path)
