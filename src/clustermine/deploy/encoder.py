"""How a deployed detector turns images into what its score reads: the embeddings, and where
the score needs them (catalog needs ``local_features``, ``views``) the local patch features
and the embeddings of the corrupted views, all from the encoding loop of the workflow
(:func:`clustermine.encode.encode_image_features`), so that an image scores as it does in
the workflow."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from clustermine.deploy.inputs import ImageBatchData, ImageSource, collate, open_source
from clustermine.deploy.modelspec import ModelSpec
from clustermine.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInput:
    """How images become the model's input: ``transform`` (PIL image to tensor, run where the
    images are decoded) and ``on_device`` (the rest, on a batch on the model's device), split
    as the workflow's encoder splits them (``clustermine.image_loading.split_preprocess``); ``split``
    says whether they were (then ``transform`` ends in uint8 pixels, which views need)."""

    transform: Any
    on_device: Any
    shape: tuple[int, ...]
    dtype: Any
    split: bool

    @classmethod
    def of(cls, preprocess) -> "ModelInput":
        import torch

        from clustermine.image_loading import input_shape, split_preprocess

        split = split_preprocess(preprocess)
        transform, on_device = split if split else (preprocess, None)
        dtype = torch.uint8 if split else torch.float32
        return cls(transform, on_device, input_shape(transform), dtype, bool(split))


class ImageEncoder:
    """The model of a deployed detector, built on first use, and the encoding of its images.

    ``local``: also make the local patch features; ``views``: also the embeddings of these
    corrupted views, seeded by ``view_seed`` (the seed the workflow made the detector's view
    files with). ``source`` names the detector in messages.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        source: str,
        dim: int = 0,
        local: bool = False,
        views: Sequence[str] = (),
        view_seed: int = 0,
        device: str | None = None,
        batch_size: int = 256,
        workers: int = 0,
        precision: str = "auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        lock: threading.RLock | None = None,
        storage: str = "float32",
    ) -> None:
        from clustermine.h5io import STORAGE_DTYPES
        from clustermine.views import Corruption

        if storage not in STORAGE_DTYPES:
            raise ValueError(f"{source}: embedding storage must be one of {STORAGE_DTYPES}, "
                             f"got {storage!r}")  # fmt: skip
        self.storage = storage
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.spec, self.source, self.dim = spec, source, int(dim)
        self.local = bool(local)
        self.views = [Corruption(v, view_seed) for v in views]
        self.device, self.batch_size, self.workers = device, int(batch_size), int(workers)
        self.precision, self.max_pixels = precision, max_pixels
        self._lock = lock or threading.RLock()
        self._loaded = None
        self._input: ModelInput | None = None

    @property
    def extra_features(self) -> list[str]:
        """What the score reads of an image besides its embedding, in words (none: [])."""
        out = ["local patch features [N, P, D]"] if self.local else []
        if self.views:
            out.append(f"embeddings of the views {[v.view for v in self.views]}")
        return out

    @property
    def model(self):
        """The open_clip model (a ``clustermine.models.LoadedModel``), built on first use;
        a ValueError naming the detector where it cannot make the features its score reads."""
        from clustermine.local_features import local_support

        with self._lock:
            if self._loaded is None:
                t0 = time.perf_counter()
                loaded = self.spec.build(self.device)
                into = ModelInput.of(loaded.preprocess)
                why = local_support(loaded.model, loaded.arch) if self.local else None
                if why:
                    raise ValueError(f"{self.source}: its score reads local patch features: {why}")
                if self.views and not into.split:
                    raise ValueError(
                        f"{self.source}: its score reads corrupted views, but the preprocessing "
                        f"of {loaded.arch} is not PIL steps then Normalize, so a view has no "
                        "place in it"
                    )
                self._loaded, self._input = loaded, into
                log.info("built model %s on %s in %.1f s", self.spec.arch, loaded.device,
                         time.perf_counter() - t0)  # fmt: skip
            return self._loaded

    @property
    def input(self) -> ModelInput:
        self.model  # noqa: B018 - the preprocessing comes with the model
        return self._input

    @property
    def draft_size(self) -> tuple[int, int]:
        """Twice the model's input size, ``(width, height)``: with ``preprocess(...,
        draft=True)`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale where it stays at least this
        large."""
        height, width = self.input.shape[-2:]
        return 2 * width, 2 * height

    def preprocess(self, source: ImageSource, draft: bool = False):
        """One image as the model's input tensor (raises for an unreadable image); with
        ``draft``, a large JPEG is decoded at a reduced scale (faster; the pixels differ a
        little from a full decoding)."""
        size = self.draft_size if draft else None
        return self.input.transform(open_source(source, self.max_pixels, size))

    def encode_pixels(self, pixels, features: bool = True):
        """The :class:`~clustermine.encode.ImageFeatures` of preprocessed images
        (:meth:`preprocess`, stacked); with ``features=False`` the embeddings alone."""
        step = self.batch_size
        batches = ((pixels[s : s + step],) for s in range(0, len(pixels), step))
        return self._encode(batches, features)

    def encode(
        self, images: Sequence[ImageSource], features: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ):  # fmt: skip
        """The :class:`~clustermine.encode.ImageFeatures` of images (paths, encoded bytes or
        PIL images), read in batches, and one error text per image ("" where it was read);
        the rows of unreadable images are zeros."""
        import torch

        sources, into = list(images), self.input
        data = ImageBatchData(sources, into.transform, into.shape, self.max_pixels, into.dtype)
        paths_only = all(isinstance(x, (str, os.PathLike)) for x in sources)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=self.batch_size,
            num_workers=self.workers if paths_only else 0,
            collate_fn=collate,
            pin_memory=self.model.device.type == "cuda",
        )
        errors: list[str] = []

        def batch_done(size: int, batch_errors: list[str]) -> None:
            errors.extend(batch_errors)
            if on_batch is not None:
                on_batch(size)

        return self._encode(loader, features, batch_done), errors

    def _encode(self, batches, features: bool, on_batch: Callable | None = None):
        from clustermine.encode import encode_image_features

        loaded, into = self.model, self.input
        with self._lock:
            out = encode_image_features(
                loaded, batches, self.precision, into.on_device, on_batch, self.dim,
                local=self.local and features, views=self.views if features else (),
            )  # fmt: skip
        if out.local is not None:
            # float16, as the workflow stores them (clustermine.h5io.write_local_features), so
            # that an image scores as it did there, calibration included; a value beyond
            # float16's range becomes inf, an error in the image's row.
            with np.errstate(over="ignore"):
                out.local = out.local.astype(np.float16)
        if self.storage == "float16":
            # Embeddings (and views) rounded as a model with storage: float16 stores them; a
            # value beyond float16's range becomes inf, an error in the image's row.
            with np.errstate(over="ignore"):
                out.embeddings = out.embeddings.astype(np.float16).astype(np.float32)
                if out.views:
                    out.views = [v.astype(np.float16).astype(np.float32) for v in out.views]
        return out
