"""The images a deployed detector scores: paths gathered from the command line, and image
sources (files, PIL images, encoded bytes) turned into model input, one error per bad image.

An image's pixel count is checked from its header, before anything is decoded; an uploaded
JPEG far larger than the model's input can be decoded at a reduced scale (``draft``)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

import torch
from PIL import Image, UnidentifiedImageError

from clustermine.image_files import list_image_files
from clustermine.images import (
    DEFAULT_MAX_PIXELS,
    ImageTooLarge,
    _allow,
    bomb_pixels,
    load_rgb,
    to_rgb,
)

# A file with one of these suffixes is a list of image paths, one per line.
LIST_SUFFIXES = (".txt", ".lst", ".list")

ImageSource = Union[str, os.PathLike, Image.Image, bytes]


def gather_paths(args: Iterable[str | os.PathLike]) -> list[str]:
    """Image paths from command-line arguments: an image file, a folder (every image below it,
    sorted, as clustermine.image_files lists it: symbolic links followed, hidden files and
    folders skipped, broken links kept), or a file list (``.txt``/``.lst``/``.list``: one path
    per line, relative to the list's folder, ``#`` comments). A path that does not exist, or
    a broken link, is kept, so that it is reported as unreadable in its row."""
    out: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            out += [str(path / p) for p in list_image_files(path, skip_hidden=True).paths]
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            out += read_file_list(path)
        else:
            out.append(str(path))
    return out


def read_file_list(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line if os.path.isabs(line) else str(path.parent / line))
    return out


def source_name(source: Any, i: int) -> str:
    """How an image is named in results: its path, else ``image <i>``."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "filename", None) or f"image {i}"


class TooManyPixels(ImageTooLarge):
    """An image with more pixels than the limit; ``pixels`` and ``limit`` for messages."""

    def __init__(self, pixels: int, limit: int, size: tuple[int, int] | None = None):
        self.pixels, self.limit, self.size = pixels, limit, size
        what = f"{size[0]}x{size[1]} = {pixels:,}" if size else f"{pixels:,}"
        super().__init__(f"{what} pixels, above the limit of {limit:,} pixels per image")


def open_source(
    source: ImageSource,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """8-bit RGB from a path, an encoded image (bytes) or a PIL image.

    Raises :class:`~clustermine.images.ImageTooLarge` above ``max_pixels`` (None: no limit),
    checked from the header before anything is decoded, and Pillow's errors for data that is
    not an image. A path is opened as the workflow opens image files
    (:func:`clustermine.images.load_rgb`). ``draft``: encoded bytes of a JPEG at least twice
    this size in both directions are decoded at 1/2, 1/4 or 1/8 scale, no smaller than it.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels)
        return to_rgb(source)
    if isinstance(source, (str, os.PathLike)):
        return load_rgb(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source), max_pixels, draft)
    raise TypeError(
        f"cannot read an image from {type(source).__name__}: give a path, bytes or a PIL image"
    )


def _decode(data: bytes, max_pixels: int | None, draft: tuple[int, int] | None) -> Image.Image:
    _allow(max_pixels)  # Pillow's own limit, where ours is higher
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:  # far above Pillow's limit, so above ours
        raise TooManyPixels(bomb_pixels(err), max_pixels) from None
    except UnidentifiedImageError:
        # Pillow's message names the in-memory file by its repr; the caller names the image.
        raise UnidentifiedImageError("not an image format Pillow can read") from None
    with img:
        _check_pixels(img.size, max_pixels)
        if draft is not None:
            img.draft(None, draft)
        return to_rgb(img)


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    pixels = size[0] * size[1]
    if max_pixels is not None and pixels > max_pixels:
        raise TooManyPixels(pixels, max_pixels, size)


def describe_error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class ImageBatchData(torch.utils.data.Dataset):
    """Model input of each source: ``(tensor, error)``; a zero tensor and the error's text
    for an unreadable one."""

    def __init__(
        self,
        sources: Sequence[ImageSource],
        transform: Callable,
        shape: tuple[int, ...],
        max_pixels: int | None,
        dtype: torch.dtype = torch.float32,
    ):
        self.sources, self.transform, self.shape, self.dtype = sources, transform, shape, dtype
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        try:
            return self.transform(open_source(self.sources[i], self.max_pixels)), ""
        except Exception as err:  # noqa: BLE001 - any decoding failure means "unreadable"
            return torch.zeros(self.shape, dtype=self.dtype), describe_error(err)


def collate(items):
    """A batch of ``ImageBatchData`` items: stacked tensors, and the errors as a list."""
    return torch.stack([t for t, _ in items]), [e for _, e in items]
