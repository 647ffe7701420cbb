import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_image_folder

from clustermine.datasets import (
    DatasetError,
    build_index,
    class_names_available,
    index_filelist,
    index_imagefolder,
    read_index,
    subsample,
    write_index,
)
from clustermine.encode import TooManyUnreadable, encode_images, merge_shards
from clustermine.encode_text import encode_texts, masked_padding_id
from clustermine.h5io import ImageEmbeddings, write_image_embeddings
from clustermine.models import RANDOM_WEIGHTS, load_model


@pytest.fixture(scope="module")
def tiny_model():
    torch.set_num_threads(1)
    return load_model("clustermine-tiny", None, device="cpu")


@pytest.fixture
def folder(tmp_path):
    root = make_image_folder(tmp_path / "imgs", {"n001": 4, "n002": 3}, seed=0)
    (root / "n002" / "broken.png").write_bytes(b"garbage")
    return root


def test_imagefolder_index_and_class_map(folder, tmp_path):
    index = index_imagefolder(folder)
    assert len(index) == 8 and index.class_names == ["n001", "n002"]
    assert index.paths[0] == "n001/000.png" and list(index.labels) == [0] * 4 + [1] * 4
    (tmp_path / "map.txt").write_text("n001 tench\nn002\tgreat white shark\n")
    named = index_imagefolder(folder, tmp_path / "map.txt")
    assert named.class_names == ["tench", "great white shark"]
    (tmp_path / "bad.txt").write_text("n001 tench\n")
    with pytest.raises(DatasetError, match="lacks 1 folders"):
        index_imagefolder(folder, tmp_path / "bad.txt")
    with pytest.raises(DatasetError, match="not a directory"):
        index_imagefolder(tmp_path / "missing")


def test_filelist_labels(tmp_path):
    (tmp_path / "list.txt").write_text("a/1.jpg 3\nb/2.jpg 0\n")
    idx = index_filelist(tmp_path / "list.txt", tmp_path)
    assert idx.paths == ["a/1.jpg", "b/2.jpg"] and list(idx.labels) == [3, 0]
    (tmp_path / "named.txt").write_text("x.jpg dog\ny.jpg cat\nz.jpg dog\n")
    idx = index_filelist(tmp_path / "named.txt", tmp_path)
    assert idx.class_names == ["cat", "dog"] and list(idx.labels) == [1, 0, 1]
    (tmp_path / "plain.txt").write_text("x.jpg\n")
    assert list(index_filelist(tmp_path / "plain.txt", tmp_path).labels) == [-1]


def test_filelist_a_line_without_its_label_is_named(tmp_path):
    """One unlabelled line among labelled ones used to turn every label into -1 (with a
    class-name file) or renumber the integer labels as sorted strings (without one)."""
    lines = [f"img/{i}.png {i}" for i in range(12)]
    lines[5] = "img/5.png"
    (tmp_path / "list.txt").write_text("# images\n" + "\n".join(lines) + "\n")
    (tmp_path / "classes.txt").write_text("".join(f"class{i}\n" for i in range(12)))
    for names in (None, tmp_path / "classes.txt"):
        with pytest.raises(DatasetError, match=r"list\.txt:7: img/5\.png has no label, while "
                                               "11 of the 12"):
            index_filelist(tmp_path / "list.txt", tmp_path, names)


def test_filelist_integer_labels_keep_their_values(tmp_path):
    (tmp_path / "list.txt").write_text("".join(f"img/{i}.png {i}\n" for i in (2, 10, 0, 11, 1)))
    idx = index_filelist(tmp_path / "list.txt", tmp_path)
    assert list(idx.labels) == [2, 10, 0, 11, 1] and idx.class_names is None
    # integers on some lines, class names on others: ambiguous, named
    (tmp_path / "mixed.txt").write_text("a.png 3\nb.png dog\n")
    message = r"mixed\.txt:1: a\.png: label '3' is an integer, while .*mixed\.txt:2: b\.png has"
    with pytest.raises(DatasetError, match=message + " the class name 'dog'"):
        index_filelist(tmp_path / "mixed.txt", tmp_path)


def test_filelist_names_not_in_the_class_name_file_and_extra_columns_are_named(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "named.txt").write_text("a.png dog\nb.png dgo\n")
    with pytest.raises(DatasetError, match=r"named\.txt:2: b\.png: label 'dgo' is not one of the "
                                           r"2 class names of .*classes\.txt"):
        index_filelist(tmp_path / "named.txt", tmp_path, tmp_path / "classes.txt")
    (tmp_path / "spaces.txt").write_text("a.png dog\nmy photos/b.png cat\n")
    with pytest.raises(DatasetError, match=r"spaces\.txt:2: expected '<path> \[label\]'.*tab"):
        index_filelist(tmp_path / "spaces.txt", tmp_path)
    # with a tab between them, paths and class names may hold spaces
    (tmp_path / "tabs.txt").write_text("my photos/a.png\tgreat white shark\nb.png\ttench\n")
    idx = index_filelist(tmp_path / "tabs.txt", tmp_path)
    assert idx.paths == ["my photos/a.png", "b.png"]
    assert idx.class_names == ["great white shark", "tench"] and list(idx.labels) == [0, 1]


def test_a_byte_order_mark_is_not_part_of_a_path_or_a_name(folder, tmp_path):
    bom = "\ufeff"
    (tmp_path / "list.txt").write_text(bom + "n001/000.png 1\nn001/001.png 0\n", encoding="utf-8")
    (tmp_path / "classes.txt").write_text(bom + "tench\nshark\n", encoding="utf-8")
    idx = index_filelist(tmp_path / "list.txt", folder, tmp_path / "classes.txt")
    assert idx.paths[0] == "n001/000.png" and idx.class_names == ["tench", "shark"]
    (tmp_path / "map.txt").write_text(bom + "n001 tench\nn002 shark\n", encoding="utf-8")
    assert index_imagefolder(folder, tmp_path / "map.txt").class_names == ["tench", "shark"]
    (tmp_path / "latin1.txt").write_bytes(b"a.png cat\nb.png caf\xe9\n")
    with pytest.raises(DatasetError, match=r"latin1\.txt:2: not UTF-8 text"):
        index_filelist(tmp_path / "latin1.txt", tmp_path)


def test_webdataset_samples_without_a_class_name_are_named(tmp_path):
    import tarfile

    with tarfile.open(tmp_path / "s-0.tar", "w") as tar:
        for key, name in (("a", "dog"), ("b", None), ("c", "cat")):
            (tmp_path / f"{key}.jpg").write_bytes(b"x")
            tar.add(tmp_path / f"{key}.jpg", arcname=f"{key}.jpg")
            if name:
                (tmp_path / f"{key}.txt").write_text(name)
                tar.add(tmp_path / f"{key}.txt", arcname=f"{key}.txt")
    spec = {"type": "webdataset", "root": str(tmp_path), "tars": "s-0.tar"}
    with pytest.raises(DatasetError, match=r"s-0\.tar: b\.jpg has no label"):
        build_index(spec)


def test_the_class_name_probe_imports_neither_numpy_nor_torch(folder, tmp_path):
    """workflow/rules/common.smk imports it whenever the Snakefile is parsed."""
    listed = str(tmp_path / "list.txt")
    (tmp_path / "list.txt").write_text("a.png dog\n")
    code = (
        "import sys\n"
        "from clustermine.datasets import class_names_available, DatasetError\n"
        f"print(class_names_available({{'type': 'imagefolder', 'root': {str(folder)!r}}}))\n"
        f"print(class_names_available({{'type': 'filelist', 'list': {listed!r}}}))\n"
        "print(sorted({'numpy', 'torch', 'h5py', 'PIL'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["True", "True", "[]"], out.stdout


def test_class_names_available_agrees_with_the_index(folder, tmp_path):
    """The workflow's parse-time answer matches what indexing the dataset later finds."""
    lists = {"ints": "# a comment\na/1.jpg 3\n", "names": "x.jpg dog\n", "plain": "x.jpg\n",
             "tabs": "my photos/a.jpg\tgreat white shark\n", "bom": "\ufeffa.jpg\t7\n"}
    for name, text in lists.items():
        (tmp_path / f"{name}.txt").write_text(text)
        spec = {"type": "filelist", "root": str(tmp_path), "list": str(tmp_path / f"{name}.txt")}
        expected = index_filelist(spec["list"], tmp_path).class_names is not None
        assert class_names_available(spec) is expected, name
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    spec = {"type": "filelist", "root": str(tmp_path), "list": str(tmp_path / "ints.txt"),
            "class_names": str(tmp_path / "classes.txt")}
    assert class_names_available(spec) is True
    assert class_names_available({"type": "imagefolder", "root": str(folder)}) is True
    missing = {"type": "filelist", "root": str(tmp_path), "list": str(tmp_path / "none.txt")}
    assert class_names_available(missing) is None  # not there yet: cannot tell
    data = ImageEmbeddings(np.ones((2, 4), np.float32), np.array([0, 1]), ["a", "b"])
    write_image_embeddings(tmp_path / "bare.h5", data)
    data.class_names = ["cat", "dog"]
    write_image_embeddings(tmp_path / "named.h5", data)
    for file, expected in [("bare.h5", False), ("named.h5", True), ("absent.h5", None)]:
        spec = {"type": "embeddings", "paths": {"m": str(tmp_path / file)}}
        assert class_names_available(spec) is expected, file


def test_subsample_is_seeded_and_ordered(folder, tmp_path):
    index = index_imagefolder(folder)
    a, b = subsample(index, 5, 3), subsample(index, 5, 3)
    assert a.paths == b.paths and len(a) == 5
    assert a.paths == sorted(a.paths, key=index.paths.index)
    spec = {"type": "imagefolder", "root": str(folder), "limit": 5, "seed": 3}
    write_index(tmp_path / "i.tsv", build_index(spec))
    back = read_index(tmp_path / "i.tsv")
    assert back.paths == a.paths and back.params["limit"] == 5


def test_shards_cover_rows_once(folder):
    index = index_imagefolder(folder)
    ranges = [index.shard(i, 3) for i in range(3)]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(index)
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(2))


def test_encode_skips_corrupt_image(folder, tiny_model):
    index = index_imagefolder(folder)
    out = encode_images(tiny_model, index, batch_size=3, max_unreadable_fraction=0.2)
    assert out.embeddings.shape == (7, 32) and out.embeddings.dtype == np.float32
    assert out.attrs["unreadable_files"] == ["n002/broken.png"]
    assert "n002/broken.png" not in out.paths and len(out.labels) == 7
    with pytest.raises(TooManyUnreadable, match="1 of 8 images could not be read"):
        encode_images(tiny_model, index, batch_size=3, max_unreadable_fraction=0.05)


def test_shard_merge_equals_single_pass(folder, tiny_model, tmp_path):
    index = index_imagefolder(folder)
    full = encode_images(tiny_model, index, batch_size=4, max_unreadable_fraction=0.5)
    files = []
    for i in range(3):
        start, stop = index.shard(i, 3)
        part = encode_images(tiny_model, index, start, stop, batch_size=2,
                             max_unreadable_fraction=1.0)
        part.attrs.update(tiny_model.attrs(), dataset="d")
        files.append(tmp_path / f"s{i}.h5")
        write_image_embeddings(files[-1], part)
    merged = merge_shards(files)
    np.testing.assert_allclose(merged.embeddings, full.embeddings, rtol=1e-5, atol=1e-6)
    assert merged.paths == full.paths and merged.attrs["unreadable_files"] == ["n002/broken.png"]
    assert merged.attrs["model_pretrained"] == RANDOM_WEIGHTS and merged.attrs["random_weights"]


def test_merge_refuses_shards_of_different_models(tmp_path):
    def shard(name, pretrained):
        data = ImageEmbeddings(np.zeros((1, 2), np.float32), np.zeros(1), ["x"], None,
                               {"model_arch": "m", "model_pretrained": pretrained, "dataset": "d"})
        write_image_embeddings(tmp_path / name, data)
        return tmp_path / name
    with pytest.raises(ValueError, match="must come from one run"):
        merge_shards([shard("a.h5", "one"), shard("b.h5", "two")])


def test_prompt_ensemble(tiny_model):
    names = ["dog", "cat"]
    templates = ["a photo of a {}.", "art of the {}."]
    emb = encode_texts(tiny_model, names, templates, batch_size=2)
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    with torch.inference_mode():
        tok = tiny_model.tokenizer([t.format("cat") for t in templates])
        f = torch.nn.functional.normalize(tiny_model.model.encode_text(tok).float(), dim=-1)
        ref = torch.nn.functional.normalize(f.mean(0), dim=-1).numpy()
    np.testing.assert_allclose(emb[1], ref, rtol=1e-4, atol=1e-5)


def test_length_batched_text_encoding_equals_padded(tiny_model):
    """A text tower that masks its padding (MiniLM) is encoded in length-sorted, trimmed
    batches; chunking, sorting and trimming leave every embedding as the padded pass gives."""
    loaded = load_model("clustermine-demo-minilm", None, device="cpu")
    assert masked_padding_id(loaded.model) == 0 and masked_padding_id(tiny_model.model) is None
    names = ["cat", "gym shoe", "x", "bird of paradise flower", "ankle boot", "dog", "t-shirt"]
    templates = ["a photo of a {}.", "itap of a {}."]
    emb = encode_texts(loaded, names, templates, batch_size=3, chunk_texts=6)
    with torch.inference_mode():
        tok = loaded.tokenizer([t.format(n) for n in names for t in templates])
        assert (tok == 0).any()  # the reference pass really holds padding
        ref = torch.nn.functional.normalize(loaded.model.encode_text(tok).float(), dim=-1)
        ref = torch.nn.functional.normalize(ref.view(len(names), 2, -1).mean(1), dim=-1)
    np.testing.assert_allclose(emb, ref.numpy(), atol=1e-5)


def test_unknown_model_and_missing_checkpoint():
    with pytest.raises(ValueError, match="unknown open_clip architecture 'ViT-Nope'"):
        load_model("ViT-Nope", None)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model("clustermine-tiny", "nowhere/missing.pt")
