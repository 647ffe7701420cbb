"""Corrupted views of an image: the ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019)
at a severity, applied to the image as the model sees it (after its resize and crop, before
its normalisation). CoVer averages a score over the original image and such views.

A view is named ``<corruption>-<severity>`` (``gaussian_blur-2``). The corruptions are the
maintained ``imagecorruptions`` package (the ``imagecorruptions-imaug`` distribution), whose
version every view file records; this module only names, checks and seeds them. Corruptions
that draw random numbers (noise, snow, spatter, elastic) draw them from a seed of the view and
of the image's pixels as the model sees them, so a view of an image is the same in every run,
shard and worker, and the same whether the workflow encodes it from a dataset or a deployed
detector from an upload: an image's name plays no part.
"""

from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np
from PIL import Image

# The 19 corruptions of the package (15 ImageNet-C corruptions, then its 4 validation ones).
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise", "gaussian_blur",
    "spatter", "saturate",
)  # fmt: skip
SEVERITIES = (1, 2, 3, 4, 5)
# CoVer's official sets (tmlr-group/CoVer, eval_ood_detection.py): "recommended" is the set its
# authors chose on SVHN as validation OOD data; "full" is the dictionary its script runs by
# default, every corruption but frost at every severity.
_RECOMMENDED = ("brightness", "fog", "saturate", "motion_blur", "defocus_blur", "gaussian_blur")
PRESETS = {
    "recommended": tuple(f"{c}-{s}" for c in _RECOMMENDED for s in (1, 2)),
    "full": tuple(f"{c}-{s}" for c in CORRUPTIONS if c != "frost" for s in SEVERITIES),
}
PACKAGE = "imagecorruptions-imaug"


class ViewError(ValueError):
    """A view name or list that is not a corruption at a severity."""


def parse_view(name: str) -> tuple[str, int]:
    """``"fog-2"`` -> ``("fog", 2)``; a clear error for anything else."""
    corruption, _, severity = str(name).rpartition("-")
    if corruption not in CORRUPTIONS or severity not in {str(s) for s in SEVERITIES}:
        raise ViewError(
            f"unknown view {name!r}: a view is <corruption>-<severity>, the severity 1 to 5 and "
            f"the corruption one of {', '.join(CORRUPTIONS)}; or name a preset "
            f"({', '.join(PRESETS)})"
        )
    return corruption, int(severity)


def expand_views(views: str | Iterable[str]) -> tuple[str, ...]:
    """The view names of a preset name or of a list of view names (checked, duplicates refused);
    an empty list is the original image alone."""
    if isinstance(views, str):
        if views not in PRESETS:
            raise ViewError(f"unknown view preset {views!r}; presets: {', '.join(PRESETS)}")
        return PRESETS[views]
    names = tuple(str(v) for v in views)
    for name in names:
        parse_view(name)
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise ViewError(f"views listed twice: {sorted(seen)}")
    return names


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "not installed"


def view_seed(view: str, pixels: np.ndarray, seed: int = 0) -> int:
    """The seed of the random draws of ``view`` of an image whose pixels, as the model sees
    them (after its resize and crop), are ``pixels`` (uint8 [H, W, 3])."""
    head = zlib.crc32(f"{seed}:{view}:".encode())
    return zlib.crc32(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes(), head)


class Corruption:
    """The corruption of a view, seeded per image by its pixels (:func:`view_seed`), on a PIL
    image (:meth:`__call__`) or on uint8 pixels (:meth:`pixels`). Picklable, so that
    DataLoader workers can run it."""

    def __init__(self, view: str, seed: int = 0) -> None:
        self.view, self.seed = view, int(seed)
        self.corruption, self.severity = parse_view(view)

    def __repr__(self) -> str:
        return f"Corruption({self.view!r}, seed={self.seed})"

    def __call__(self, img: Image.Image) -> Image.Image:
        return Image.fromarray(self.pixels(np.asarray(img.convert("RGB"))), "RGB")

    def pixels(self, x: np.ndarray) -> np.ndarray:
        """The view of uint8 pixels [H, W, 3], as uint8 [H, W, 3]."""
        from imagecorruptions import corrupt

        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
            raise ViewError(
                f"a view is made from uint8 RGB pixels [H, W, 3], got {x.dtype} {x.shape}"
            )
        # The package draws from numpy's global generator: seed it, and put it back after.
        state = np.random.get_state()
        np.random.seed(view_seed(self.view, x, self.seed))
        try:
            y = corrupt(x, corruption_name=self.corruption, severity=self.severity)
        finally:
            np.random.set_state(state)
        y = np.asarray(y)
        if y.shape != x.shape:
            raise ViewError(
                f"corruption {self.view} turned a {x.shape} image into {y.shape}; "
                f"{PACKAGE} {package_version()} is not usable for this image size"
            )
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)
