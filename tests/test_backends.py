"""The faiss backend of kNN and k-means against the project's torch code: the same exact
neighbours, the same k-means; the torch fallback without faiss; the approximate index reports
its recall."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import planted_clusters

from clustermine.clustering import ClusterConfigError
from clustermine.clustering.kmeans import fit_kmeans
from clustermine.compute import pick_backend
from clustermine.clustering.files import cluster_files
from clustermine.clustering.io import read_clusters
from clustermine.h5io import ImageEmbeddings, write_image_embeddings
from clustermine.knn import (
    approximate_knn,
    blocked_topk,
    cosine_knn,
    read_knn,
    search_knn,
    write_knn,
)
from clustermine.knn_ivf import neighbour_recall
from clustermine.knn_search import KnnSearch

faiss = pytest.importorskip("faiss")


@pytest.fixture
def no_faiss(monkeypatch):
    """As if faiss were not installed (importing it fails)."""
    monkeypatch.setitem(sys.modules, "faiss", None)


def gaussian_rows(n=400, d=24, seed=0):
    """Rows in general position: no two cosines tie."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=(n, 1))).astype(np.float32)


def test_exact_knn_of_faiss_and_torch_agree():
    x = gaussian_rows()
    ours = cosine_knn(x, 10, device="cpu", backend="torch", block=(37, 50))
    theirs = cosine_knn(x, 10, device="cpu", backend="faiss")
    assert theirs.attrs["backend"] == "faiss" and ours.attrs["backend"] == "torch"
    assert neighbour_recall(theirs.indices, ours.indices) == 1.0
    np.testing.assert_array_equal(theirs.indices, ours.indices)  # same order too: no ties
    np.testing.assert_allclose(theirs.sims, ours.sims, atol=1e-6)
    assert not (theirs.indices == np.arange(len(x))[:, None]).any()


def test_auto_is_faiss_on_the_cpu():
    nn = cosine_knn(gaussian_rows(50), 3, device="cpu")
    assert nn.attrs["backend"] == "faiss"
    assert pick_backend("auto", torch.device("cpu")) == "faiss"
    assert pick_backend("auto", torch.device("cuda")) == "torch"  # faiss-cpu has no GPU


def test_faiss_keeps_duplicates_and_leaves_out_only_the_row_itself():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    nn = cosine_knn(x, 1, device="cpu", backend="faiss")
    assert nn.indices[:, 0].tolist() == [1, 0, 3, 2]
    # Three identical rows, k = 2: each row's neighbours are the other two.
    same = np.ones((3, 4), np.float32)
    nn = cosine_knn(same, 2, device="cpu", backend="faiss")
    for i, row in enumerate(nn.indices):
        assert sorted(row) == sorted({0, 1, 2} - {i})


def test_key_bias_search_of_faiss_equals_torch():
    """The debiased miner's top-k of ⟨x̂_i, x̂_j⟩ − b_j, the row itself included."""
    x = gaussian_rows(300, 16, seed=1)
    bias = np.random.default_rng(2).uniform(0, 0.5, len(x)).astype(np.float32)
    kw = dict(key_bias=bias, exclude_self=False, device="cpu")
    ours = blocked_topk(x, 7, backend="torch", budget_bytes=4096, **kw)
    theirs = blocked_topk(x, 7, backend="faiss", **kw)
    np.testing.assert_array_equal(theirs.indices, ours.indices)
    np.testing.assert_allclose(theirs.sims, ours.sims, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_query_rows_are_those_rows_of_the_full_search(backend):
    x = gaussian_rows(200, 8, seed=3)
    full = cosine_knn(x, 5, device="cpu", backend=backend)
    part = cosine_knn(x, 5, device="cpu", backend=backend, query_rows=(50, 120))
    np.testing.assert_array_equal(part.indices, full.indices[50:120])
    assert part.attrs["query_rows"] == [50, 120]


def test_without_faiss_auto_falls_back_to_torch(no_faiss):
    x = gaussian_rows(120, 8)
    nn = cosine_knn(x, 4, device="cpu")
    assert nn.attrs["backend"] == "torch"
    result = fit_kmeans(planted_clusters(n=300, c=5)[0], 5, device="cpu")
    assert result.attrs["backend"] == "torch"
    with pytest.raises(ValueError, match="pip install faiss-cpu"):
        cosine_knn(x, 4, device="cpu", backend="faiss")
    with pytest.raises(ClusterConfigError, match="pip install faiss-cpu"):
        fit_kmeans(x, 3, {"backend": "faiss"}, device="cpu")


def test_faiss_is_refused_on_a_gpu():
    with pytest.raises(ValueError, match="runs on the CPU"):
        pick_backend("faiss", torch.device("cuda"))
    with pytest.raises(ValueError, match="backend must be one of"):
        pick_backend("cuvs", torch.device("cpu"))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("init", ["kmeans++", "kmeans||", "random"])
def test_kmeans_of_faiss_and_torch_agree(metric, init):
    x, _ = planted_clusters(n=1500, c=12, noise=0.3, seed=4)
    params = {"metric": metric, "init": init, "seed": 1, "tol": 0}
    ours = fit_kmeans(x, 12, {**params, "backend": "torch"}, device="cpu")
    theirs = fit_kmeans(x, 12, {**params, "backend": "faiss"}, device="cpu")
    assert ours.attrs["backend"] == "torch" and theirs.attrs["backend"] == "faiss"
    assert theirs.params["backend"] == "faiss"  # recorded with the other parameters
    assert theirs.head_losses[0] == pytest.approx(ours.head_losses[0], rel=1e-5)
    # The same iterations (faiss may go on a few more at an unchanged inertia).
    common = min(len(theirs.loss_history), len(ours.loss_history)) - 1
    np.testing.assert_allclose(theirs.loss_history[:common], ours.loss_history[:common],
                               rtol=1e-5)  # fmt: skip
    assert (theirs.assignments == ours.assignments).mean() >= 0.999
    assert theirs.attrs["backend_version"] == faiss.__version__


def test_random_seeding_is_seeded_and_recovers_planted_clusters():
    from sklearn.metrics import normalized_mutual_info_score as nmi

    x, y = planted_clusters(n=2000, c=10, seed=6)
    a = fit_kmeans(x, 10, {"init": "random", "seed": 3, "n_init": 3}, device="cpu")
    b = fit_kmeans(x, 10, {"init": "random", "seed": 3, "n_init": 3}, device="cpu")
    np.testing.assert_array_equal(a.assignments, b.assignments)
    assert nmi(y, a.assignments) >= 0.9 and a.params["init"] == "random"
    with pytest.raises(ClusterConfigError, match="init=.forgy. must be one of"):
        fit_kmeans(x, 10, {"init": "forgy"}, device="cpu")


def test_approximate_knn_reports_its_recall():
    x, _ = planted_clusters(n=2000, c=20, noise=0.3, seed=7)
    exact = cosine_knn(x, 10, device="cpu")
    # Probing every cell is an exhaustive search: recall 1.
    full = approximate_knn(x, 10, nlist=16, nprobe=16, recall_queries=200)
    assert full.attrs["recall"] == 1.0 and full.attrs["index"] == "ivf"
    assert neighbour_recall(full.indices, exact.indices) == 1.0
    one = approximate_knn(x, 10, nlist=16, nprobe=1, recall_queries=2000)
    assert 0 < one.attrs["recall"] < 1.0
    assert one.attrs["recall"] == pytest.approx(neighbour_recall(one.indices, exact.indices))


def test_a_graph_name_says_its_search_and_reads_back():
    exact, ivf = KnnSearch(50), KnnSearch(50, "ivf", None, 8)
    assert (exact.name, ivf.name) == ("k50", "k50.ivf-nlistauto-nprobe8")
    assert KnnSearch(5, "ivf", 300, 2).name == "k5.ivf-nlist300-nprobe2"
    for search in (exact, ivf, KnnSearch(5, "ivf", 300, 2)):
        assert KnnSearch.parse(search.name) == search
    # An exact search has one name whatever IVF settings come with it.
    assert KnnSearch(50, "exact", 300, 2) == exact
    for bad in ("k0", "k5.ivf", "k5.ivf-nlist0-nprobe2", "k5.ivf-nlistauto-nprobe0", "5",
                "k5.hnsw-nprobe2", "k05", "k5.ivf-nlist3-nprobe2.h5"):
        with pytest.raises(ValueError, match="not a kNN graph name"):
            KnnSearch.parse(bad)
    with pytest.raises(ValueError, match="index must be one of"):
        KnnSearch(5, "hnsw")
    with pytest.raises(ValueError, match="nprobe must be a positive integer"):
        KnnSearch(5, "ivf", None, 0)


def _image_file(path, x):
    attrs = {"model_arch": "ViT-B-32", "model_pretrained": "openai", "dataset": "d"}
    rows = [f"{i}.png" for i in range(len(x))]
    write_image_embeddings(path, ImageEmbeddings(x, np.full(len(x), -1), rows, attrs=attrs))


def test_a_cluster_file_records_its_graph_search_and_refuses_another(tmp_path):
    """TEMI on an IVF graph: the cluster file repeats the graph's search and measured recall;
    a graph searched otherwise than the clusterer asks (renamed by hand) is refused."""
    x, _ = planted_clusters(n=400, c=8, noise=0.3, seed=3)
    images = tmp_path / "d.h5"
    _image_file(images, x)
    params = {"heads": 2, "knn": 5, "epochs": 2, "batch_size": 32, "warmup_epochs": 1,
              "knn_index": "ivf", "knn_nlist": 8, "knn_nprobe": 2}  # fmt: skip
    search = KnnSearch(5, "ivf", 8, 2)
    nn = search_knn(x, search)
    assert nn.attrs["graph"] == search.name and 0 < nn.attrs["recall"] <= 1
    knn = tmp_path / f"d.{search.name}.h5"
    write_knn(knn, nn, {"model_arch": "ViT-B-32", "model_pretrained": "openai"})
    assert read_knn(knn).attrs["recall"] == nn.attrs["recall"]
    out = tmp_path / "c.h5"
    cluster_files("temi", params, 4, images=images, out=out, knn=knn, slug="temi-ivf",
                  device="cpu")  # fmt: skip
    attrs = read_clusters(out).attrs
    assert attrs["knn_graph"] == search.name and attrs["knn_index"] == "ivf"
    assert attrs["knn_recall"] == nn.attrs["recall"] and attrs["knn_nprobe"] == 2
    exact = {**params, "knn_index": "exact"}
    with pytest.raises(ClusterConfigError, match=r"searched as 'k5.ivf-nlist8-nprobe2', but "
                       r"clusterers.temi asks for 'k5'; delete the file"):  # fmt: skip
        cluster_files("temi", exact, 4, images=images, out=tmp_path / "e.h5", knn=knn,
                      slug="temi", device="cpu")  # fmt: skip
    assert not (tmp_path / "e.h5").exists()
    # Without a graph file TEMI searches its own, as its parameters say.
    from clustermine.clustering import fit_clusters

    own = fit_clusters("temi", x, 4, params, device="cpu")
    assert own.assignments.shape == (400,)


def test_ivf_rows_whose_probed_cells_hold_too_few_rows_are_searched_exactly():
    """Cells of about 20 rows, one probed, k = 30: faiss pads the result with -1 (no row);
    such a row must never reach TEMI as a neighbour (index -1 would be the last row). Those
    rows are searched exactly instead, counted and recorded."""
    x, _ = planted_clusters(n=2000, c=20, noise=0.3, seed=7)
    nn = approximate_knn(x, 30, nlist=100, nprobe=1, recall_queries=2000)
    exact = cosine_knn(x, 30, device="cpu")
    assert (nn.indices >= 0).all() and (nn.indices < len(x)).all()
    assert np.isfinite(nn.sims).all()
    assert not (nn.indices == np.arange(len(x))[:, None]).any()
    assert all(len(set(row)) == 30 for row in nn.indices.tolist())
    filled = nn.attrs["exact_fallback_rows"]
    assert 0 < filled <= len(x)
    # The recall recorded is that of the graph as written, fallback rows included.
    assert nn.attrs["recall"] == pytest.approx(neighbour_recall(nn.indices, exact.indices))


def test_an_ivf_graph_of_a_file_holds_the_rows_once(tmp_path, monkeypatch):
    """Read in blocks from its file, an IVF graph is that of the rows in memory, bit for bit,
    without a second copy of them beside the index: the Python-side peak (the trained cells'
    sample, the graph, a block) stays under half the rows' size."""
    import tracemalloc

    from clustermine import knn_ivf
    from clustermine.image_rows import open_image_rows

    monkeypatch.setattr(knn_ivf, "IVF_BLOCK_ROWS", 500)
    monkeypatch.setattr(knn_ivf, "EXACT_BLOCK_BYTES", 2**20)
    x, _ = planted_clusters(n=12000, c=10, d=256, noise=0.3, seed=2)
    path = tmp_path / "rows.h5"
    _image_file(path, x)
    # 4 cells are trained on at most 4·256 rows: a seeded sample, the same from both.
    held = approximate_knn(x, 5, nlist=4, nprobe=2, recall_queries=50)
    with open_image_rows(path) as images:
        tracemalloc.start()
        read = approximate_knn(images.embeddings, 5, nlist=4, nprobe=2, recall_queries=50)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    np.testing.assert_array_equal(read.indices, held.indices)
    np.testing.assert_array_equal(read.sims, held.sims)
    assert read.attrs == held.attrs and read.attrs["train_rows"] == 4 * 256
    assert peak < 0.5 * x.nbytes, (peak, x.nbytes)
    # The sample's exact neighbours, merged over blocks of keys, are those of one search.
    rows = np.array([0, 7, 11999])
    idx, sims = knn_ivf.exact_rows(x, rows, 5)
    exact = cosine_knn(x, 5, device="cpu")
    np.testing.assert_array_equal(idx, exact.indices[rows])
    np.testing.assert_allclose(sims, exact.sims[rows], rtol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_an_ivf_graph_of_a_file_with_a_non_finite_row_names_its_rows(tmp_path, monkeypatch, bad):
    """A row that is not finite, past the first block of the file: the IVF job stops with the
    file's name and the block's rows, instead of training cells or searching on it."""
    import h5py

    from clustermine import knn_ivf
    from clustermine.h5io import EmbeddingFileError
    from clustermine.image_rows import open_image_rows

    monkeypatch.setattr(knn_ivf, "IVF_BLOCK_ROWS", 500)
    x, _ = planted_clusters(n=1200, c=6, d=16, noise=0.3, seed=5)
    path = tmp_path / "odd name é.h5"
    _image_file(path, x)
    with h5py.File(path, "r+") as f:
        f["embeddings"][777, 2] = bad
    with open_image_rows(path) as images, pytest.raises(
        EmbeddingFileError, match=r"odd name é\.h5.*not finite.*rows 500 to 999 of the file"
    ):
        approximate_knn(images.embeddings, 5, nlist=4, nprobe=2, recall_queries=20)


def test_ivf_lists_allocated_once_hold_what_faiss_add_makes():
    """The IVF job sizes each cell's list before adding (one allocation instead of doubling):
    the lists hold the same rows in the same order as faiss's own add."""
    import faiss

    from clustermine import knn_ivf

    x, _ = planted_clusters(n=3000, c=12, d=32, noise=0.3, seed=4)
    x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)

    def trained():
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(32), 32, 20, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0
        index.train(x)
        return index

    grown, sized = trained(), trained()
    grown.add(x)
    knn_ivf._add_presized(faiss, sized, x, 0.0)
    assert sized.ntotal == grown.ntotal == len(x)
    lists = [faiss.downcast_InvertedLists(i.invlists) for i in (grown, sized)]
    for cell in range(20):
        size = lists[0].list_size(cell)
        assert lists[1].list_size(cell) == size
        ids = [faiss.rev_swig_ptr(inv.get_ids(cell), size).copy() for inv in lists]
        np.testing.assert_array_equal(ids[0], ids[1])


def test_an_ivf_index_needs_as_many_rows_as_cells():
    with pytest.raises(ValueError, match="nlist=50 cells needs at least as many rows, got N=20"):
        approximate_knn(gaussian_rows(20), 3, nlist=50)


def test_faiss_backend_survives_clusters_that_empty_out():
    """Many duplicates and C near N: faiss splits a large cluster where one empties."""
    rng = np.random.default_rng(8)
    x = np.concatenate([np.ones((40, 6)), rng.normal(size=(20, 6))]).astype(np.float32)
    result = fit_kmeans(x, 15, {"init": "random", "seed": 0, "backend": "faiss"}, device="cpu")
    assert result.assignments.min() >= 0 and result.assignments.max() < 15
    assert np.isfinite(result.head_losses[0]) and result.health["nonempty_clusters"] >= 10
