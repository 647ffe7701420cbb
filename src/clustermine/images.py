"""Reading one image as 8-bit RGB, the way every encoder of the project does.

Pillow's ``convert("RGB")`` clips high-bit-depth pixels instead of rescaling them: a 16-bit PNG
(mode ``I;16``) becomes almost white. Such images are rescaled to 8 bits first. Images above a
pixel limit (a decompression bomb, or a scan far larger than any model input) are refused with
their path, instead of Pillow's warning that names no file.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import IO

import numpy as np
from PIL import Image

from .image_files import link_problem

# Pillow's own default limit (about 89.5 megapixels); config encode.max_image_pixels.
DEFAULT_MAX_PIXELS = 89_478_485
# Integer modes holding more than 8 bits per pixel, and their full-scale value.
_HIGH_BIT_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535}


class ImageTooLarge(ValueError):
    """An image has more pixels than the configured limit."""


def _to_8bit(img: Image.Image) -> Image.Image:
    """A single-channel image of more than 8 bits as mode ``L``, rescaled to 0..255."""
    x = np.asarray(img, dtype=np.float64)
    if img.mode in _HIGH_BIT_MODES:
        x = x * (255.0 / _HIGH_BIT_MODES[img.mode])
    elif img.mode == "I":
        # 32-bit integers; PNG decoders give 16-bit images this mode too.
        top = 65535.0 if x.min(initial=0) >= 0 and x.max(initial=0) <= 65535 else x.max()
        x = (x - min(0.0, x.min(initial=0))) * (255.0 / max(top, 1.0))
    else:  # "F": floats; [0, 1] means unit range, anything else is stretched
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        if 0.0 <= lo and hi <= 1.0:
            x = x * 255.0
        else:
            x = (x - lo) * (255.0 / max(hi - lo, 1e-12))
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(x)), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB, high-bit-depth modes rescaled rather than clipped."""
    if img.mode in _HIGH_BIT_MODES or img.mode in ("I", "F"):
        img = _to_8bit(img)
    return img.convert("RGB")


def load_rgb(
    source: str | os.PathLike | IO[bytes], max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open an image file (a path or a binary file object) as 8-bit RGB.

    Raises :class:`ImageTooLarge` above ``max_pixels`` (None: no limit), Pillow's own errors
    for files that are not images and an :class:`OSError` naming the problem of a broken
    symbolic link (dangling, a loop); callers treat all as unreadable.
    """
    name = getattr(source, "name", source)
    _allow(max_pixels)
    try:
        with Image.open(source) as img:
            pixels = img.size[0] * img.size[1]
            if max_pixels is not None and pixels > max_pixels:
                raise ImageTooLarge(
                    f"{name}: {img.size[0]}x{img.size[1]} = {pixels:,} pixels, above the limit "
                    f"of {max_pixels:,} (encode.max_image_pixels); shrink the image or raise "
                    "the limit"
                )
            return to_rgb(img)
    except Image.DecompressionBombError as err:  # above twice Pillow's own (raised) limit
        limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
        raise ImageTooLarge(
            f"{name}: {bomb_pixels(err):,} pixels, above the limit of {limit or 0:,} "
            "(encode.max_image_pixels); shrink the image or raise the limit"
        ) from None
    except OSError:  # a broken symbolic link: say what is wrong with it
        problem = link_problem(source) if isinstance(source, (str, os.PathLike)) else None
        if problem:
            raise OSError(f"{name}: {problem}") from None
        raise


def bomb_pixels(err: Image.DecompressionBombError) -> int:
    """The pixel count of an image Pillow refused to open (it states it only in its message,
    with its own limit, twice the one it warns at, which is not the configured one)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    return int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1


def _allow(max_pixels: int | None) -> None:
    """Let Pillow open what our own limit allows. Pillow's limit is a process-wide setting,
    so it is only ever raised, never toggled back (callers may decode in threads)."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and (max_pixels is None or max_pixels > current):
        Image.MAX_IMAGE_PIXELS = max_pixels


# The limit is checked by load_rgb, naming the file; Pillow's warning names none.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
