"""Zero-shot top-k in memory-bounded chunks equals the direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from clustermine.compute import block_shape
from clustermine.zeroshot import (
    ZeroShotResult,
    read_zero_shot,
    write_zero_shot,
    zero_shot_top1,
    zero_shot_topk,
)


def direct_topk(images, texts, k):
    x = images / np.linalg.norm(images, axis=1, keepdims=True)
    t = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    sims = x.astype(np.float64) @ t.T.astype(np.float64)
    # Descending similarity, ties to the lower index.
    order = np.lexsort((np.broadcast_to(np.arange(len(t)), sims.shape), -sims), axis=1)
    return order[:, :k], np.take_along_axis(sims, order[:, :k], axis=1)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(203, 16)).astype(np.float32), rng.normal(size=(517, 16)).astype(
        np.float32
    )


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("budget", [4 * 1024, 64 * 1024, 2**30])
def test_chunked_equals_direct(data, k, budget):
    images, texts = data
    got = zero_shot_topk(images, texts, k=k, budget_bytes=budget, device="cpu")
    want_idx, want_sim = direct_topk(images, texts, k)
    np.testing.assert_array_equal(got.indices, want_idx)
    np.testing.assert_allclose(got.sims, want_sim, atol=1e-5)


def test_a_long_pass_logs_its_progress(data, monkeypatch, caplog):
    import clustermine.zeroshot as zs

    monkeypatch.setattr(zs, "PROGRESS_SECONDS", 0.0)
    _, texts = data
    images = np.random.default_rng(1).normal(size=(3000, 16)).astype(np.float32)
    with caplog.at_level("INFO", logger="clustermine.zeroshot"):
        zero_shot_topk(images, texts, k=1, budget_bytes=4 * 1024, device="cpu")
    lines = [r.getMessage() for r in caplog.records if "images/s" in r.getMessage()]
    assert lines and all(f"of {len(images)} images" in line for line in lines)
    assert "s left" in lines[-1]


def test_chunked_equals_unchunked_top1(data):
    images, texts = data
    small = zero_shot_top1(images, texts, budget_bytes=2048, device="cpu")
    large = zero_shot_top1(images, texts, budget_bytes=2**30, device="cpu")
    np.testing.assert_array_equal(small, large)


def test_ties_go_to_lower_index_across_chunks():
    texts = np.eye(4, dtype=np.float32)[[0, 1, 2, 1, 3, 1]]  # name 1 appears at 1, 3 and 5
    images = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float32)
    for budget in (12, 24, 10**6):
        got = zero_shot_topk(images, texts, k=3, budget_bytes=budget, device="cpu")
        np.testing.assert_array_equal(got.indices[0], [1, 3, 5])
        assert got.indices[1, 0] == 0


def test_block_shape_respects_budget():
    for n, m, budget in [(1_281_167, 270_000, 2**28), (50, 10, 2**20), (10, 10**6, 4096)]:
        rows, cols = block_shape(n, m, budget)
        assert 1 <= rows <= n and 1 <= cols <= m
        assert rows * cols * 4 * 3 <= max(budget, 12)


def test_k_larger_than_names_and_errors(data):
    images, texts = data
    got = zero_shot_topk(images[:3], texts[:4], k=10, device="cpu")
    assert got.indices.shape == (3, 4)
    with pytest.raises(ValueError, match="empty name set"):
        zero_shot_topk(images, texts[:0], device="cpu")
    with pytest.raises(ValueError, match="\\[N, D\\]"):
        zero_shot_topk(images, texts[:, :8], device="cpu")


def test_file_round_trip(tmp_path, data):
    images, texts = data
    res = zero_shot_topk(images, texts, k=3, device="cpu")
    path = tmp_path / "zs.h5"
    write_zero_shot(path, res, {"corpus": "words"})
    back = read_zero_shot(path)
    np.testing.assert_array_equal(back.indices, res.indices)
    np.testing.assert_array_equal(back.sims, res.sims)
    assert back.attrs["corpus"] == "words" and back.attrs["k"] == 3
    top1 = read_zero_shot(path, top1_only=True)
    assert top1.indices.shape == (len(images), 1)
    np.testing.assert_array_equal(top1.top1, res.top1)
    np.testing.assert_array_equal(top1.sims[:, 0], res.sims[:, 0])


def test_a_zero_shot_file_of_mismatched_shapes_is_refused(tmp_path):
    import h5py

    path = tmp_path / "zs.h5"
    with h5py.File(path, "w") as f:
        f["indices"] = np.zeros((4, 3), np.int64)
        f["sims"] = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=f"{path}: 'indices'.*one shape; delete"):
        read_zero_shot(path, top1_only=True)


def test_writing_a_zero_shot_file_does_not_copy_the_result(tmp_path):
    """At 5M images × top-5 the result is 300 MB: it is written as it is, not copied first
    (the 5M rehearsal measured the copies as 60 bytes a row of the job's peak)."""
    import tracemalloc

    n, k = 200_000, 5
    result = ZeroShotResult(np.arange(n * k, dtype=np.int64).reshape(n, k),
                            np.ones((n, k), np.float32), {"k": k})  # fmt: skip
    tracemalloc.start()
    try:
        write_zero_shot(tmp_path / "zs.h5", result, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (result.indices.nbytes + result.sims.nbytes) / 4
    back = read_zero_shot(tmp_path / "zs.h5")
    np.testing.assert_array_equal(back.indices, result.indices)
