"""Encode images and prompt-ensembled text with an open_clip model (DESIGN §4)."""

from __future__ import annotations

import io
import logging
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from .datasets import DatasetIndex, split_member
from .h5io import EmbeddingFileError, ImageEmbeddings, read_features
from .images import DEFAULT_MAX_PIXELS, load_rgb
from .local_features import check_local_support, encode_local
from .models import LoadedModel
from .views import Corruption

log = logging.getLogger(__name__)


# What an embedding file holds: one embedding per image, or one local feature per patch.
FEATURES = ("global", "local")


class TooManyUnreadable(RuntimeError):
    pass


class _ImageFiles(torch.utils.data.Dataset):
    """Images by path; unreadable files yield a zero tensor and ``ok = False``."""

    def __init__(
        self, root: str, paths: Sequence[str], transform: Callable, shape, max_pixels: int | None,
        dtype: torch.dtype = torch.float32,
    ):  # fmt: skip
        self.root, self.paths, self.transform, self.shape = Path(root), paths, transform, shape
        self.max_pixels, self.dtype = max_pixels, dtype

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img = load_rgb(self.root / self.paths[i], self.max_pixels)
            return self.transform(img), True
        except Exception as err:  # noqa: BLE001 - any decoding failure means "unreadable"
            log.warning("unreadable image %s: %s", self.root / self.paths[i], err)
            return torch.zeros(self.shape, dtype=self.dtype), False


class _TarImages(torch.utils.data.IterableDataset):
    """Images of tar shards (webdataset layout), each tar read once, front to back; yields
    (image, ok, row), ``row`` the image's position in ``paths`` (``<tar>/<member>``). DataLoader
    workers share the tars out. Unreadable members, members missing from their tar and the
    rest of an unreadable tar yield a zero tensor and ``ok = False``."""

    def __init__(self, root: str, paths: Sequence[str], transform: Callable, shape,
                 max_pixels: int | None, dtype: torch.dtype = torch.float32):  # fmt: skip
        self.root, self.transform, self.shape = Path(root), transform, shape
        self.max_pixels, self.dtype = max_pixels, dtype
        self.rows: dict[str, dict[str, int]] = {}  # tar -> {member: row}
        for row, path in enumerate(paths):
            tar, member = split_member(path)
            self.rows.setdefault(tar, {})[member] = row

    def __iter__(self):
        tars = list(self.rows)
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            tars = tars[worker.id :: worker.num_workers]
        for tar in tars:
            yield from self._read(tar)

    def _read(self, tar: str):
        wanted = dict(self.rows[tar])
        try:
            with tarfile.open(self.root / tar, "r|") as stream:  # sequential reads only
                for member in stream:
                    row = wanted.pop(member.name, None)
                    if row is None:
                        continue
                    name = f"{tar}/{member.name}"
                    try:
                        data = io.BytesIO(stream.extractfile(member).read())
                        data.name = name
                        yield self.transform(load_rgb(data, self.max_pixels)), True, row
                    except Exception as err:  # noqa: BLE001 - any decoding failure: unreadable
                        log.warning("unreadable image %s: %s", self.root / name, err)
                        yield torch.zeros(self.shape, dtype=self.dtype), False, row
        except (tarfile.TarError, OSError) as err:
            log.warning("tar shard %s cannot be read to its end: %s", self.root / tar, err)
        for member, row in wanted.items():
            log.warning("unreadable image %s/%s: not in its tar shard", self.root / tar, member)
            yield torch.zeros(self.shape, dtype=self.dtype), False, row


def input_shape(preprocess: Callable) -> tuple[int, ...]:
    """The shape of one image's model input (or of the uint8 pixels of a split one)."""
    return tuple(preprocess(Image.new("RGB", (32, 32))).shape)


class _Normalize:
    """The end of a CLIP preprocessing, on a batch on the device: uint8 → float / 255, minus
    the mean, over the std, exactly as torchvision's ``ToTensor`` and ``Normalize`` compute it
    per image (the same float operations, so the same numbers)."""

    def __init__(self, mean, std) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.mean.device != batch.device:  # moved once, on the first batch
            self.mean, self.std = self.mean.to(batch.device), self.std.to(batch.device)
        x = batch.to(dtype=torch.float32).div(255)
        return x.sub_(self.mean).div_(self.std)


class _PilToUint8:
    """The PIL part of a preprocessing (resize, crop, RGB), then a view's corruption if one is
    given (on the image as the model sees it), then the pixels as uint8 [3, H, W]."""

    def __init__(self, steps, corruption: Corruption | None = None) -> None:
        self.steps, self.corruption = steps, corruption

    def __call__(self, img: Image.Image) -> torch.Tensor:
        for step in self.steps:
            img = step(img)
        if self.corruption is not None:
            img = self.corruption(img)
        if img.mode != "RGB":
            raise ValueError(f"preprocessed image has mode {img.mode}, not RGB")
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def split_preprocess(preprocess: Callable) -> tuple[Callable, _Normalize] | None:
    """For a preprocessing that is PIL steps, a to-tensor conversion and ``Normalize`` (every
    open_clip image transform), the PIL steps ending in uint8 pixels (run by the loader
    workers) and the conversion and normalisation of a whole batch (run on the device); None
    for any other preprocessing, which then runs whole in the workers.

    Workers then send a quarter of the bytes (uint8 instead of float32) through shared
    memory, pinned memory and the host-to-GPU copy, and the per-image float work leaves them.
    """
    import torchvision.transforms as T

    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], T.Normalize):
        return None
    *head, to_tensor = steps[:-1]
    tensor_like = ("ToTensor", "MaybeToTensor", "PILToTensor", "Normalize")
    if type(to_tensor).__name__ not in ("ToTensor", "MaybeToTensor"):
        return None
    if any(type(t).__name__ in tensor_like for t in head):
        return None
    return _PilToUint8(head), _Normalize(steps[-1].mean, steps[-1].std)


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
    image_type = _TarImages if index.params.get("type") == "webdataset" else _ImageFiles
    split = split_preprocess(loaded.preprocess)
    if view is not None:
        if not split:
            raise ValueError(
                f"{loaded.arch}: its preprocessing is not PIL steps then Normalize, so a "
                f"corrupted view ({view}) has no place in it"
            )
        split = (_PilToUint8(split[0].steps, Corruption(view, seed)), split[1])
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


def masked_padding_id(model) -> int | None:
    """The pad token id of a text tower that masks its padding (open_clip's Hugging Face text
    towers), whose trailing padding can be cut off without changing any output; None for other
    towers (CLIP's own pools at the end-of-text token, SigLIP's at the last position, so their
    padding stays)."""
    try:
        from open_clip.hf_model import HFTextEncoder
    except ImportError:  # open_clip without transformers support
        return None
    text = getattr(model, "text", None)
    return text.config.pad_token_id if isinstance(text, HFTextEncoder) else None


def encode_texts(
    loaded: LoadedModel,
    names: Sequence[str],
    templates: Sequence[str],
    batch_size: int | None = None,
    precision: str = "auto",
    progress_every: float = 30.0,
    chunk_texts: int = 65536,
    return_norms: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Prompt ensemble: normalise each prompt's embedding, average, normalise (float32 [M, D]).

    With ``return_norms`` also the norm of every name's raw feature, the prompt mean of
    ``encode_text`` before any normalisation (float32 [M]; debiased negative mining ranks
    names by it).

    Prompts are encoded ``chunk_texts`` at a time. For text towers that mask their padding the
    prompts of a chunk are batched by token length and each batch cut to its longest prompt,
    which on a CPU triples the speed of a MiniLM tower (the output is the same). ``batch_size``
    (prompts per forward pass) defaults to 1024 on a GPU and 256 on a CPU, where smaller
    length-sorted batches are cut shorter.
    """
    if batch_size is None:
        batch_size = 1024 if loaded.device.type == "cuda" else 256
    pad = masked_padding_id(loaded.model)
    per_chunk = max(1, chunk_texts // len(templates))
    out, norms = [], []
    last = t0 = time.monotonic()
    with torch.inference_mode(), loaded.autocast(precision):
        for s in range(0, len(names), per_chunk):
            chunk = names[s : s + per_chunk]
            tokens = loaded.tokenizer([t.format(n) for n in chunk for t in templates])
            if pad is not None:
                lengths = (tokens != pad).sum(1)
                order = torch.argsort(lengths, stable=True)
            else:
                order = torch.arange(len(tokens))
            feats = None
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                batch = tokens[idx]
                if pad is not None:
                    batch = batch[:, : max(1, int(lengths[idx].max()))]
                raw_batch = loaded.model.encode_text(batch.to(loaded.device)).float().cpu()
                if feats is None:
                    feats = torch.empty(len(tokens), raw_batch.shape[1])
                    raw = torch.empty(len(tokens), raw_batch.shape[1])
                feats[idx] = torch.nn.functional.normalize(raw_batch, dim=-1)
                raw[idx] = raw_batch
                if time.monotonic() - last > progress_every:
                    last = time.monotonic()
                    done = s + (b + len(idx)) // len(templates)
                    log.info("encoded %d/%d names", done, len(names))
            feats = feats.view(len(chunk), len(templates), -1).mean(dim=1)
            out.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
            norms.append(raw.view(len(chunk), len(templates), -1).mean(dim=1).norm(dim=-1).numpy())
    if not out:  # no names (a corpus without adjectives has no conjugated labels): [0, D]
        with torch.inference_mode():
            dim = loaded.model.encode_text(loaded.tokenizer([""]).to(loaded.device)).shape[-1]
        out, norms = [np.empty((0, dim), np.float32)], [np.empty(0, np.float32)]
    log.info(
        "encoded %d names x %d prompts in %.1f s", len(names), len(templates), time.monotonic() - t0
    )
    emb = np.concatenate(out).astype(np.float32)
    return (emb, np.concatenate(norms).astype(np.float32)) if return_norms else emb
