"""Tar shards in the webdataset layout as a dataset type: the same images as a folder give the
same index rows and the same embeddings; shards map to encoding shards; bad members are listed
as unreadable."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from helpers import make_image_folder

from clustermine.datasets import (
    DatasetError,
    build_index,
    class_names_available,
    expand_braces,
    index_imagefolder,
    read_index,
    split_member,
    write_index,
)
from clustermine.encode import encode_images
from clustermine.models import load_model


@pytest.fixture(scope="module")
def tiny_model():
    torch.set_num_threads(1)
    return load_model("clustermine-tiny", None, device="cpu")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def folder_to_tars(folder, out, per_tar: int, labels=("cls", "txt")):
    """The images of an image folder as webdataset shards (in the folder index's order),
    ``per_tar`` samples each: ``<class>_<file stem>.png`` + ``.cls`` (label) + ``.txt``
    (class name)."""
    index = index_imagefolder(folder)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for t, start in enumerate(range(0, len(index), per_tar)):
        names.append(f"shard-{t:03d}.tar")
        with tarfile.open(out / names[-1], "w") as tar:
            for path, label in zip(index.paths[start:start + per_tar],
                                   index.labels[start:start + per_tar]):
                key = path.replace("/", "_").rsplit(".", 1)[0]
                _add(tar, f"{key}.png", (folder / path).read_bytes())
                if "cls" in labels:
                    _add(tar, f"{key}.cls", str(int(label)).encode())
                if "txt" in labels:
                    _add(tar, f"{key}.txt", index.class_names[label].encode())
    return index, names


@pytest.fixture
def folder(tmp_path):
    return make_image_folder(tmp_path / "imgs", {"cat": 5, "dog": 4, "fox": 3}, seed=4)


def test_braces_expand_like_webdataset():
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("{a,b}-{1..2}.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"]
    assert split_member("train/s-000.tar/x/y.jpg") == ("train/s-000.tar", "x/y.jpg")


def test_tar_shards_index_like_their_folder(folder, tmp_path):
    ref, names = folder_to_tars(folder, tmp_path / "tars", per_tar=5)
    spec = {"type": "webdataset", "root": str(tmp_path / "tars"),
            "tars": "shard-{000..002}.tar"}
    index = build_index(spec)
    assert len(index) == len(ref) == 12
    assert list(index.labels) == list(ref.labels) and index.class_names == ref.class_names
    assert index.paths[0] == "shard-000.tar/cat_000.png"
    assert class_names_available(spec) is True
    write_index(tmp_path / "index.tsv", index)
    assert read_index(tmp_path / "index.tsv").paths == index.paths
    # A glob lists the same shards; class names from a file when the shards only have .cls.
    only_cls, _ = folder_to_tars(folder, tmp_path / "cls", per_tar=5, labels=("cls",))
    (tmp_path / "names.txt").write_text("cat\ndog\nfox\n")
    named = build_index({"type": "webdataset", "root": str(tmp_path / "cls"), "tars": "*.tar",
                         "class_names": str(tmp_path / "names.txt")})
    assert named.class_names == ["cat", "dog", "fox"] and list(named.labels) == list(ref.labels)
    assert class_names_available({"type": "webdataset", "root": str(tmp_path / "cls"),
                                  "tars": "*.tar"}) is False
    with pytest.raises(DatasetError, match="shard-009.tar does not exist"):
        build_index({**spec, "tars": ["shard-000.tar", "shard-009.tar"]})
    with pytest.raises(DatasetError, match="uncompressed .tar"):
        build_index({**spec, "tars": ["shard-000.tar.gz"]})


def test_encoding_shards_are_whole_tars(folder, tmp_path):
    _, names = folder_to_tars(folder, tmp_path / "tars", per_tar=5)  # tars of 5, 5 and 2
    index = build_index({"type": "webdataset", "root": str(tmp_path / "tars"), "tars": names})
    assert [index.shard(i, 3) for i in range(3)] == [(0, 5), (5, 10), (10, 12)]
    assert [index.shard(i, 2) for i in range(2)] == [(0, 5), (5, 12)]
    # More encoding shards than tars: plain row ranges (each job reads its rows of a tar).
    assert [index.shard(i, 4) for i in range(4)] == [(0, 3), (3, 6), (6, 9), (9, 12)]


@pytest.mark.parametrize("workers", [0, 2])
def test_tar_shards_embed_like_their_folder(folder, tmp_path, tiny_model, workers):
    ref, names = folder_to_tars(folder, tmp_path / "tars", per_tar=5)
    index = build_index({"type": "webdataset", "root": str(tmp_path / "tars"), "tars": names})
    from_folder = encode_images(tiny_model, ref, batch_size=4)
    from_tars = encode_images(tiny_model, index, batch_size=4, num_workers=workers)
    assert from_tars.attrs["unreadable_files"] == []
    assert list(from_tars.labels) == list(from_folder.labels)
    assert [p.split(".tar/")[1] for p in from_tars.paths] == [
        p.replace("/", "_") for p in from_folder.paths]
    if workers == 0:  # the same batches: the same numbers
        np.testing.assert_array_equal(from_tars.embeddings, from_folder.embeddings)
    else:  # other batches (each worker reads its own tars)
        np.testing.assert_allclose(from_tars.embeddings, from_folder.embeddings, atol=1e-5)
    # One encoding shard: the rows of its tars only, as the folder's same rows.
    start, stop = index.shard(1, 3)
    part = encode_images(tiny_model, index, start, stop, batch_size=4)
    folder_part = encode_images(tiny_model, ref, start, stop, batch_size=4)
    np.testing.assert_array_equal(part.embeddings, folder_part.embeddings)
    assert list(part.labels) == list(ref.labels[start:stop])


def test_unreadable_members_are_left_out_and_listed(folder, tmp_path, tiny_model):
    _, names = folder_to_tars(folder, tmp_path / "tars", per_tar=12)
    with tarfile.open(tmp_path / "tars" / "extra.tar", "w") as tar:
        _add(tar, "broken.jpg", b"\xff\xd8 not a jpeg")
        _add(tar, "broken.cls", b"1")
        _add(tar, "good.png", (folder / "dog" / "000.png").read_bytes())
        _add(tar, "good.cls", b"1")
    (tmp_path / "names.txt").write_text("cat\ndog\nfox\n")
    index = build_index({"type": "webdataset", "root": str(tmp_path / "tars"),
                         "tars": [*names, "extra.tar"],
                         "class_names": str(tmp_path / "names.txt")})
    assert len(index) == 14
    # A member listed in the index but gone from its tar since (the tar was rewritten).
    index.paths[3] = index.paths[3].replace(".png", "-gone.png")
    out = encode_images(tiny_model, index, batch_size=4, max_unreadable_fraction=0.5)
    assert out.attrs["unreadable_files"] == [index.paths[3], "extra.tar/broken.jpg"]
    assert len(out) == 12 and "extra.tar/good.png" in out.paths
