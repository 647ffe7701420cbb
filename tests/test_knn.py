import h5py
import numpy as np
import pytest

from clustermine.knn import cosine_knn, inherited_attrs, read_knn, write_knn


def brute_force(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = (u @ u.T).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


@pytest.mark.parametrize("block", [None, (7, 13), (64, 1), (1, 200)])
def test_knn_matches_brute_force(block):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32) * rng.uniform(0.5, 3, size=(200, 1))
    idx, sims = brute_force(x, 5)
    nn = cosine_knn(x, 5, device="cpu", block=block)
    assert nn.indices.dtype == np.int64 and nn.sims.dtype == np.float32
    assert nn.indices.shape == (200, 5)
    np.testing.assert_array_equal(nn.indices, idx)
    np.testing.assert_allclose(nn.sims, sims, atol=1e-5)
    assert not (nn.indices == np.arange(200)[:, None]).any()


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_knn_in_place_normalisation_gives_the_same_neighbours(backend):
    x = np.random.default_rng(2).normal(size=(150, 8)).astype(np.float32) * 3.0
    kept = x.copy()
    a = cosine_knn(x, 4, device="cpu", backend=backend)
    np.testing.assert_array_equal(x, kept)  # the default works on a copy
    b = cosine_knn(x, 4, device="cpu", backend=backend, copy=False)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.sims, b.sims)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)  # overwritten


def test_knn_excludes_self_but_keeps_duplicates():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    nn = cosine_knn(x, 1, device="cpu", block=(1, 1))
    assert nn.indices[:, 0].tolist() == [1, 0, 3, 2]
    np.testing.assert_allclose(nn.sims[:2, 0], 1.0)


def test_small_budget_gives_small_blocks_and_same_result():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    ref = cosine_knn(x, 4, device="cpu", backend="torch")
    tight = cosine_knn(x, 4, device="cpu", budget_bytes=4 * 3 * 1000, backend="torch")
    assert tight.attrs["block_rows"] * tight.attrs["block_cols"] <= 1000
    assert tight.attrs["block_cols"] < 300
    np.testing.assert_array_equal(tight.indices, ref.indices)


def test_invalid_k():
    with pytest.raises(ValueError, match="k must be"):
        cosine_knn(np.zeros((3, 2), np.float32), 3, device="cpu")


def test_knn_file_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    nn = cosine_knn(rng.normal(size=(50, 4)).astype(np.float32), 3, device="cpu")
    image_attrs = {
        "model_arch": "ViT-B-32",
        "model_pretrained": "openai",
        "dataset": "d",
        "logit_scale": 100.0,
        "preprocessing": "not copied",
    }
    path = tmp_path / "knn" / "d.k3.h5"
    write_knn(path, nn, {**inherited_attrs(image_attrs), "source": "images/d.h5"})
    back = read_knn(path)
    np.testing.assert_array_equal(back.indices, nn.indices)
    np.testing.assert_array_equal(back.sims, nn.sims)
    assert back.k == 3
    assert back.attrs["model_arch"] == "ViT-B-32" and back.attrs["source"] == "images/d.h5"
    assert "preprocessing" not in back.attrs
    assert not list(path.parent.glob("*.tmp"))


def test_read_knn_rejects_other_files(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["embeddings"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="not a kNN file"):
        read_knn(path)
