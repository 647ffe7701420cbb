"""Image files read in row blocks: the same results as the whole-file reader, one block in
memory, and every check of the whole-file reader (with the file's row numbers); and the score
job, which holds one scored set at a time."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from clustermine.h5io import (
    EmbeddingFileError,
    ImageEmbeddings,
    read_image_embeddings,
    write_image_embeddings,
)
from clustermine.image_rows import check_image_file, open_image_rows
from clustermine.zeroshot import zero_shot_topk


def write(path, n, d, storage="float32", seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    labels = rng.integers(0, 7, n)
    attrs = {"model_arch": "ViT-B-32", "model_pretrained": "x", "storage_dtype": storage}
    data = ImageEmbeddings(emb, labels, [f"img/{i}.png" for i in range(n)], None, attrs)
    write_image_embeddings(path, data)
    return data


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_zero_shot_from_blocks_equals_the_whole_file(tmp_path, storage):
    path = tmp_path / "train.h5"
    write(path, 3001, 24, storage)
    names = np.random.default_rng(1).normal(size=(157, 24)).astype(np.float32)
    whole = read_image_embeddings(path)
    # A budget of a few rows' similarity blocks: hundreds of reads from the file.
    want = zero_shot_topk(whole.embeddings, names, 5, budget_bytes=16 * 1024, device="cpu")
    with open_image_rows(path) as images:
        assert len(images) == 3001 and images.embeddings.shape == (3001, 24)
        np.testing.assert_array_equal(images.labels, whole.labels)
        assert images.attrs["storage_dtype"] == storage
        got = zero_shot_topk(images.embeddings, names, 5, budget_bytes=16 * 1024, device="cpu")
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.sims, want.sims)
    assert got.attrs == want.attrs


def test_blocks_cover_the_file_in_order_as_float32(tmp_path):
    path = tmp_path / "train.h5"
    write(path, 1000, 8, "float16")
    whole = read_image_embeddings(path).embeddings
    with open_image_rows(path) as images:
        rows = images.embeddings.block_rows(300 * 8 * 4)
        parts = list(images.embeddings.blocks(rows))
        with pytest.raises(TypeError, match="contiguous slice"):
            images.embeddings[::2]
    assert rows == 300 and [start for start, _ in parts] == [0, 300, 600, 900]
    assert all(block.dtype == np.float32 for _, block in parts)
    np.testing.assert_array_equal(np.concatenate([b for _, b in parts]), whole)


def test_zero_shot_holds_one_block_not_the_file(tmp_path):
    # 200,000 × 64 float32: 51 MB of embeddings. Read whole, the rows alone would be traced;
    # read in blocks, the pass holds a block, the names and the [N, k] result (2.4 MB at k = 1).
    path = tmp_path / "train.h5"
    write(path, 200_000, 64)
    names = np.random.default_rng(1).normal(size=(50, 64)).astype(np.float32)
    file_bytes = 200_000 * 64 * 4
    tracemalloc.start()
    try:
        with open_image_rows(path) as images:
            zero_shot_topk(images.embeddings, names, 1, budget_bytes=2**20, device="cpu")
        _, blocks_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = read_image_embeddings(path)
        zero_shot_topk(whole.embeddings, names, 1, budget_bytes=2**20, device="cpu")
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert whole_peak > file_bytes  # what the measurement sees when the file is held
    assert blocks_peak < file_bytes / 5, (blocks_peak, file_bytes)


def test_a_bad_row_is_named_by_its_row_in_the_file(tmp_path):
    path = tmp_path / "train.h5"
    write(path, 500, 8)
    with h5py.File(path, "r+") as f:
        f["embeddings"][321, 3] = np.nan
    with open_image_rows(path) as images:
        images.embeddings[:300]  # rows before the bad one read fine
        with pytest.raises(EmbeddingFileError, match=r"not finite.*rows 300 to 499 of the file"):
            list(images.embeddings.blocks(300))
    with pytest.raises(EmbeddingFileError, match=f"{path}.*not finite"):
        check_image_file(path, 64 * 8 * 4)


@pytest.mark.parametrize(
    "datasets, message",
    [
        ({"embeddings": np.zeros((4, 3), np.float32), "labels": np.zeros(5, np.int64)},
         "inconsistent shapes"),
        ({"embeddings": np.zeros((4, 3), np.int32)}, "floating point"),
        ({"embeddings": np.zeros(4, np.float32)}, "2-D"),
        ({"vectors": np.zeros((4, 3), np.float32)}, "missing dataset 'embeddings'"),
        ({"embeddings": np.zeros((4, 3), np.float32), "embedding_dim": 7},
         "dimension 3 but the file records embedding_dim=7"),
    ],
)  # fmt: skip
def test_opening_checks_shapes_and_types(tmp_path, datasets, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            if np.ndim(data):
                f[name] = data
            else:
                f.attrs[name] = data
    with pytest.raises(EmbeddingFileError, match=f"{path}.*{message}"):
        with open_image_rows(path):
            pass


def test_opening_an_absent_file_fails():
    with pytest.raises(FileNotFoundError):
        with open_image_rows("absent-file.h5"):
            pass


def test_the_block_check_refuses_what_the_whole_file_reader_refuses(tmp_path):
    path = tmp_path / "train.h5"
    write(path, 100, 4)
    images = check_image_file(path, 10 * 4 * 4)
    assert len(images) == 100 and images.attrs["model_arch"] == "ViT-B-32"
    with h5py.File(path, "r+") as f:
        del f["paths"]
        f.create_dataset("paths", data=[f"{i}.png".encode() for i in range(99)] + [b"caf\xe9"])
    with pytest.raises(EmbeddingFileError, match="not UTF-8") as err:
        read_image_embeddings(path)
    with pytest.raises(EmbeddingFileError, match="not UTF-8") as block_err:
        check_image_file(path, 10 * 4 * 4)
    assert str(block_err.value) == str(err.value)


def test_the_score_job_holds_one_scored_set_at_a_time(tmp_path):
    """A detector that does not adapt scores the sets of an ID set one after the other:
    the job holds the largest set, not all of them, and each set scores as it does alone."""
    from clustermine.detectors import get_detector, load_detector
    from clustermine.detectors.files import score_files
    from clustermine.h5io import TextEmbeddings
    from clustermine.score_files import read_scores

    rng = np.random.default_rng(3)
    pos = TextEmbeddings(rng.normal(size=(5, 128)).astype(np.float32), list("abcde"))
    det = get_detector("mcm").fit(None, pos, None, 100.0, {}, None,
                                  meta={"model_arch": "ViT-B-32", "model_pretrained": "x"})
    det.save(tmp_path / "d.h5")
    names = ["test", "ood-a", "ood-b", "ood-c"]
    paths = [tmp_path / f"{name}.h5" for name in names]
    sets = [write(path, 30_000, 128, seed=i) for i, path in enumerate(paths)]
    tracemalloc.start()
    try:
        score_files(tmp_path / "d.h5", names, paths, ["test"], tmp_path / "s.h5",
                    context={"method": "mcm"}, device="cpu")  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_set = sets[0].embeddings.nbytes  # 15 MB
    assert peak < 2.5 * one_set  # all four sets would be 4 × 15 MB
    fresh = load_detector(tmp_path / "d.h5", device="cpu")
    for name, data in zip(names, sets):
        np.testing.assert_array_equal(read_scores(tmp_path / "s.h5", name).scores,
                                      fresh.score(data.embeddings))  # fmt: skip
