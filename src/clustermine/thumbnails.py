"""Thumbnails of dataset images for the report's galleries (clustermine.gallery).

An image is named by its dataset and its path relative to the dataset's root, as the
embedding files store it; the dataset index (``resources/index/<dataset>.tsv``) gives the root
and whether the paths are files below it or members of tar shards (``<shard>.tar/<member>``).
Each image is read once, reduced to fit a square of :data:`THUMB_SIZE` pixels (smaller images,
such as 28 x 28 digits, are kept as they are: the page enlarges them without smoothing) and
kept as a JPEG or PNG data URI, whichever is smaller; a gallery refers to it by a CSS class, so
an image shown in several places is stored once. An image that cannot be read becomes a tile
that says why.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from PIL import Image

from clustermine.images import load_rgb

log = logging.getLogger(__name__)

THUMB_SIZE = 72
JPEG_QUALITY = 80
# Images above this many pixels are not decoded for a thumbnail (a tile says so instead).
MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageRoot:
    """Where a dataset's images are: its root folder and whether its paths are tar members."""

    root: Path
    tar_members: bool = False

    @classmethod
    def from_index(cls, index_path: str | os.PathLike) -> "ImageRoot":
        from clustermine.datasets.index_file import read_index

        index = read_index(index_path)
        return cls(Path(index.root), index.params.get("type") == "webdataset")


@dataclass
class Thumbnail:
    """A stored thumbnail (``css``: its class name) or the reason there is none."""

    css: str | None
    problem: str | None = None


class ThumbnailStore:
    """The thumbnails of one gallery, each image read once."""

    def __init__(self, roots: Mapping[str, ImageRoot | None], size: int = THUMB_SIZE):
        self.roots = dict(roots)
        self.size = int(size)
        self._thumbs: dict[tuple[str, str], Thumbnail] = {}
        self._uris: list[str] = []
        self._tars: dict[Path, tarfile.TarFile] = {}

    def __len__(self) -> int:
        return len(self._uris)

    def get(self, dataset: str, path: str) -> Thumbnail:
        key = (dataset, path)
        if key not in self._thumbs:
            self._thumbs[key] = self._make(dataset, path)
        return self._thumbs[key]

    def _make(self, dataset: str, path: str) -> Thumbnail:
        root = self.roots.get(dataset)
        if root is None:
            return Thumbnail(None, "no image files (the dataset is given as embeddings)")
        try:
            img = self._open(root, path)
        except Exception as err:  # unreadable images are shown as such, never fatal
            log.warning("gallery: cannot show %s image %s: %s", dataset, path, err)
            return Thumbnail(None, f"unreadable: {type(err).__name__}")
        self._uris.append(data_uri(shrink(img, self.size)))
        return Thumbnail(f"t{len(self._uris) - 1}")

    def _open(self, root: ImageRoot, path: str) -> Image.Image:
        if not root.tar_members:
            return load_rgb(root.root / path, max_pixels=MAX_PIXELS)
        from clustermine.datasets.tar_shards import split_member

        tar_name, member = split_member(path)
        tar = self._tars.get(root.root / tar_name)
        if tar is None:
            tar = self._tars[root.root / tar_name] = tarfile.open(root.root / tar_name, "r")
        data = tar.extractfile(member)
        if data is None:
            raise OSError(f"{path}: not a file in its tar shard")
        return load_rgb(io.BytesIO(data.read()), max_pixels=MAX_PIXELS)

    def css(self) -> str:
        """One CSS rule per stored thumbnail."""
        return "\n".join(
            f".t{i}{{background-image:url({uri})}}" for i, uri in enumerate(self._uris)
        )

    def close(self) -> None:
        for tar in self._tars.values():
            tar.close()
        self._tars.clear()


def shrink(img: Image.Image, size: int) -> Image.Image:
    """``img`` reduced to fit a ``size`` square, aspect kept; smaller images stay as they are
    (the page enlarges them without smoothing, so 28 x 28 digits stay sharp and small)."""
    if max(img.size) <= size:
        return img
    img = img.copy()
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def data_uri(img: Image.Image) -> str:
    """The smaller of a JPEG and, for small images, a PNG of ``img`` (grey when it is)."""
    rgb = img.convert("RGB")
    r, g, b = rgb.split()
    if r.tobytes() == g.tobytes() == b.tobytes():
        rgb = r  # a grey image: one channel
    encoded = [("jpeg", _encode(rgb, format="JPEG", quality=JPEG_QUALITY))]
    if max(rgb.size) <= 64:
        encoded.append(("png", _encode(rgb, format="PNG", optimize=True)))
    kind, data = min(encoded, key=lambda e: len(e[1]))
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _encode(img: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **options)
    return buf.getvalue()
