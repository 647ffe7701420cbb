"""The images a deployed detector scores: paths gathered from the command line, and image
sources (files, PIL images, encoded bytes) turned into model input, one error per bad image."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

import torch
from PIL import Image

from clustermine.datasets import IMAGE_EXTENSIONS
from clustermine.images import DEFAULT_MAX_PIXELS, load_rgb, to_rgb

# A file with one of these suffixes is a list of image paths, one per line.
LIST_SUFFIXES = (".txt", ".lst", ".list")

ImageSource = Union[str, os.PathLike, Image.Image, bytes]


def gather_paths(args: Iterable[str | os.PathLike]) -> list[str]:
    """Image paths from command-line arguments: an image file, a folder (every image below it,
    sorted), or a file list (``.txt``/``.lst``/``.list``: one path per line, relative to the
    list's folder, ``#`` comments). A path that does not exist is kept, so that it is reported
    as unreadable in its row."""
    out: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )  # fmt: skip
            out += [str(p) for p in files]
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


def open_source(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """8-bit RGB from a path, an encoded image (bytes) or a PIL image."""
    if isinstance(source, Image.Image):
        pixels = source.size[0] * source.size[1]
        if max_pixels is not None and pixels > max_pixels:
            from clustermine.images import ImageTooLarge

            raise ImageTooLarge(f"{pixels:,} pixels, above the limit of {max_pixels:,}")
        return to_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return load_rgb(io.BytesIO(bytes(source)), max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return load_rgb(source, max_pixels)
    raise TypeError(
        f"cannot read an image from {type(source).__name__}: give a path, bytes or a PIL image"
    )


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
    ):
        self.sources, self.transform, self.shape = sources, transform, shape
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        try:
            return self.transform(open_source(self.sources[i], self.max_pixels)), ""
        except Exception as err:  # noqa: BLE001 - any decoding failure means "unreadable"
            return torch.zeros(self.shape), describe_error(err)


def collate(items):
    """A batch of ``ImageBatchData`` items: stacked tensors, and the errors as a list."""
    return torch.stack([t for t, _ in items]), [e for _, e in items]


def input_shape(preprocess: Callable) -> tuple[int, ...]:
    return tuple(preprocess(Image.new("RGB", (32, 32))).shape)
