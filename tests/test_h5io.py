import h5py
import numpy as np
import pytest

from clustermine.h5io import (
    EmbeddingFileError,
    ImageEmbeddings,
    TextEmbeddings,
    atomic_path,
    check_same_model,
    read_image_embeddings,
    read_text_embeddings,
    write_image_embeddings,
    write_text_embeddings,
)


def test_image_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = ImageEmbeddings(
        rng.normal(size=(5, 8)).astype(np.float32),
        np.array([0, 1, -1, 2, 0]),
        [f"cls/{i}.png" for i in range(5)],
        ["a", "b", "c"],
        {"model_arch": "x", "model_pretrained": "y", "logit_scale": 100.0,
         "unreadable_files": ["bad.png"], "nested": {"k": [1, 2]}},
    )
    path = tmp_path / "img.h5"
    write_image_embeddings(path, data)
    back = read_image_embeddings(path)
    np.testing.assert_array_equal(back.embeddings, data.embeddings)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.labels.dtype == np.int64 and back.embeddings.dtype == np.float32
    assert back.paths == data.paths and back.class_names == data.class_names
    assert back.attrs["unreadable_files"] == ["bad.png"]
    assert back.attrs["nested"] == {"k": [1, 2]}
    assert back.attrs["embedding_dim"] == 8 and back.attrs["logit_scale"] == 100.0
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"


def test_text_round_trip(tmp_path):
    emb = np.eye(3, 4, dtype=np.float32)
    path = tmp_path / "t.h5"
    write_text_embeddings(path, TextEmbeddings(emb, ["dog", "cat", "hot dog"], ["n"] * 3,
                                               ["dog.n.01", "cat.n.01", ""], {"corpus": "c"}))
    back = read_text_embeddings(path)
    assert back.names == ["dog", "cat", "hot dog"] and back.synsets[0] == "dog.n.01"
    np.testing.assert_array_equal(back.embeddings, emb)


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("finished result")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert path.read_text() == "finished result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_reader_names_missing_key(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(EmbeddingFileError, match="missing dataset 'embeddings'"):
        read_image_embeddings(path)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(EmbeddingFileError, match="junk.h5"):
        read_text_embeddings(tmp_path / "junk.h5")


def test_model_mismatch_is_refused():
    a = {"model_arch": "ViT-B-32", "model_pretrained": "openai"}
    b = {"model_arch": "ViT-B-32", "model_pretrained": "laion2b_s34b_b79k"}
    check_same_model([("a.h5", a), ("c.h5", dict(a))])
    with pytest.raises(EmbeddingFileError, match="model mismatch.*b.h5"):
        check_same_model([("a.h5", a), ("b.h5", b)])
