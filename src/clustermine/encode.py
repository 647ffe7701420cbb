"""Encode images with an open_clip model (DESIGN §4): a dataset's rows into an embedding file,
the one encoding loop shared with deployed detectors, and the merge of shard files. Loading the
images is clustermine.image_loading; text is clustermine.encode_text."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .datasets import DatasetIndex
from .h5io import EmbeddingFileError, ImageEmbeddings, read_features
from .image_loading import ImageFiles, PilToUint8, TarImages, input_shape, split_preprocess
from .images import DEFAULT_MAX_PIXELS
from .local_features import check_local_support, encode_local
from .models import LoadedModel
from .views import Corruption

log = logging.getLogger(__name__)


# What an embedding file holds: one embedding per image, or one local feature per patch.
FEATURES = ("global", "local")


class TooManyUnreadable(RuntimeError):
    pass


def encode_images(
    loaded: LoadedModel,
    index: DatasetIndex,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    precision: str = "auto",
    max_unreadable_fraction: float = 0.01,
    progress_every: float = 30.0,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    features: str = "global",
    view: str | None = None,
    seed: int = 0,
) -> ImageEmbeddings:
    """Embed rows ``[start, stop)`` of a dataset index; unreadable images (and images above
    ``max_pixels``) are left out and listed.

    ``features``: ``"global"`` (the image embeddings [N, D]) or ``"local"`` (the local patch
    features [N, P, D] of :mod:`clustermine.local_features`). ``view``: a corrupted view
    (:mod:`clustermine.views`) of every image instead of the image, its random draws seeded by
    ``seed`` and the image's pixels.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if features == "local":
        check_local_support(loaded.model, loaded.arch)
    stop = len(index) if stop is None else stop
    paths = index.paths[start:stop]
    image_type = TarImages if index.params.get("type") == "webdataset" else ImageFiles
    split = split_preprocess(loaded.preprocess)
    if view is not None:
        if not split:
            raise ValueError(
                f"{loaded.arch}: its preprocessing is not PIL steps then Normalize, so a "
                f"corrupted view ({view}) has no place in it"
            )
        split = (PilToUint8(split[0].steps, Corruption(view, seed)), split[1])
    transform, on_device = split if split else (loaded.preprocess, None)
    dtype = torch.uint8 if split else torch.float32
    data = image_type(index.root, paths, transform, input_shape(transform), max_pixels, dtype)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=loaded.device.type == "cuda",
    )
    oks, rows = [], []
    done, last = 0, time.monotonic()
    t0 = last

    def batch_done(size: int, ok, *row) -> None:
        nonlocal done, last
        oks.append(ok.numpy())
        rows.extend(r.numpy() for r in row)  # tar shards: in the order read
        done += size
        if time.monotonic() - last > progress_every:
            last = time.monotonic()
            log.info("encoded %d/%d images (%.1f img/s)", done, len(paths), done / (last - t0))

    encoded = encode_image_features(
        loaded, loader, precision, on_device, on_batch=batch_done, local=features == "local"
    )
    emb = encoded.local if features == "local" else encoded.embeddings
    ok = np.concatenate(oks) if oks else np.zeros(0, dtype=bool)
    if rows:  # back to index order
        order = np.argsort(np.concatenate(rows), kind="stable")
        ok, emb = ok[order], emb[order]
    unreadable = [p for p, good in zip(paths, ok) if not good]
    log.info(
        "encoded %d images in %.1f s (%d unreadable)", len(paths), time.monotonic() - t0,
        len(unreadable),
    )
    check_unreadable(len(unreadable), len(paths), max_unreadable_fraction, unreadable)
    return ImageEmbeddings(
        embeddings=emb[ok],
        labels=index.labels[start:stop][ok],
        paths=[p for p, good in zip(paths, ok) if good],
        class_names=index.class_names,
        attrs={
            "unreadable_files": unreadable,
            "rows": [start, stop],
            "max_image_pixels": max_pixels,
            **feature_attrs(features, view, seed),
        },
    )


def feature_attrs(features: str = "global", view: str | None = None, seed: int = 0) -> dict:
    """What an embedding file records about the kind of features it holds."""
    from .views import PACKAGE, package_version

    out: dict = {"features": features}
    if features == "local":
        out["local_features"] = "value path of the last attention layer (GL-MCM)"
    if view is not None:
        out.update(view=view, view_seed=int(seed), corruptions=f"{PACKAGE} {package_version()}")
    return out


@dataclass
class ImageFeatures:
    """What the image tower made of a set of images: their embeddings [N, D]; their local
    patch features [N, P, D] where asked for, else None; the embeddings of each asked-for
    corrupted view ([N, D] each, in the order asked)."""

    embeddings: np.ndarray
    local: np.ndarray | None = None
    views: list[np.ndarray] | None = None


def view_batch(view: Corruption, images: torch.Tensor) -> torch.Tensor:
    """The corrupted view of a batch of uint8 pixels [B, 3, H, W] (the first part of a
    :func:`split_preprocess`), image by image: the same pixels as the loader workers make
    for a view file."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"views are made from uint8 pixel batches [B, 3, H, W], got {images.dtype} "
            f"{tuple(images.shape)}: the model's preprocessing must end in Normalize"
        )
    x = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([view.pixels(img) for img in x]) if len(x) else x
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def encode_image_features(
    loaded: LoadedModel,
    batches: Iterable,
    precision: str = "auto",
    on_device: Callable | None = None,
    on_batch: Callable | None = None,
    dim: int = 0,
    *,
    local: bool = False,
    views: Sequence[Corruption] = (),
) -> ImageFeatures:
    """The image tower over ``batches`` of ``(images, *extra)`` (a DataLoader, or any iterable
    of such tuples): the embeddings (float32, not normalised; ``[0, dim]`` for none), with
    ``local`` also the local patch features (one pass of the tower makes both), and the
    embeddings of each of ``views``, made from the batch's uint8 pixels.

    ``on_device`` finishes a batch on the model's device (the normalisation of a
    :func:`split_preprocess`); ``on_batch(batch_size, *extra)`` is called after each batch.
    The one encoding loop of the workflow (:func:`encode_images`) and of deployed detectors.
    """
    emb: list[np.ndarray] = []
    loc: list[np.ndarray] = []
    per_view: list[list[np.ndarray]] = [[] for _ in views]

    def model_input(x: torch.Tensor) -> torch.Tensor:
        x = x.to(loaded.device, non_blocking=True)
        return on_device(x) if on_device is not None else x

    with torch.inference_mode(), loaded.autocast(precision):
        for images, *extra in batches:
            x = model_input(images)
            if local:
                pooled, patches = encode_local(loaded.model, x, loaded.arch)
                loc.append(patches.float().cpu().numpy())
            else:
                pooled = loaded.model.encode_image(x)
            emb.append(pooled.float().cpu().numpy())
            for view, out in zip(views, per_view):
                out.append(loaded.model.encode_image(model_input(view_batch(view, images)))
                           .float().cpu().numpy())  # fmt: skip
            if on_batch is not None:
                on_batch(len(images), *extra)

    def joined(chunks: list[np.ndarray], empty: tuple[int, ...]) -> np.ndarray:
        return np.concatenate(chunks) if chunks else np.zeros(empty, dtype=np.float32)

    return ImageFeatures(
        embeddings=joined(emb, (0, dim)),
        local=joined(loc, (0, 0, dim)) if local else None,
        views=[joined(v, (0, dim)) for v in per_view] if views else None,
    )


def check_unreadable(n_bad: int, n_total: int, max_fraction: float, examples: Sequence[str]):
    if n_total and n_bad / n_total > max_fraction:
        raise TooManyUnreadable(
            f"{n_bad} of {n_total} images could not be read ({n_bad / n_total:.1%} > "
            f"max_unreadable_fraction {max_fraction:.1%}); first ones: {list(examples[:5])}. "
            "Fix or remove them, or raise encode.max_unreadable_fraction in the config."
        )


def merge_shards(paths: Sequence[str | Path]) -> ImageEmbeddings:
    """Concatenate shard files (in the given order) into one image-embedding record."""
    if not paths:
        raise ValueError("merge_shards: no shard files given")
    parts = [read_features(p) for p in paths]
    ref = parts[0].attrs
    for p, part in zip(paths[1:], parts[1:]):
        for key in ("model_arch", "model_pretrained", "dataset", "features", "view", "view_seed"):
            if part.attrs.get(key) != ref.get(key):
                raise EmbeddingFileError(
                    f"shard {p} has {key}={part.attrs.get(key)!r}, but {paths[0]} has "
                    f"{ref.get(key)!r}: shards of one file must come from one run"
                )
    attrs = {k: v for k, v in ref.items() if k not in ("rows", "shard", "num_samples")}
    attrs["unreadable_files"] = [f for part in parts for f in part.attrs.get("unreadable_files", [])]
    attrs["num_shards"] = len(parts)
    dims = {part.embeddings.shape[1:] for part in parts if len(part)}
    if len(dims) > 1:
        raise EmbeddingFileError(f"shards {list(paths)} hold features of shapes {sorted(dims)}")
    return ImageEmbeddings(
        embeddings=np.concatenate([p.embeddings for p in parts if len(p)])
        if dims
        else parts[0].embeddings,
        labels=np.concatenate([p.labels for p in parts]),
        paths=[x for p in parts for x in p.paths],
        class_names=parts[0].class_names,
        attrs=attrs,
    )
