"""Images as the model's input: the DataLoader datasets of the encoder (image files by path,
tar shards read front to back) and the split of a CLIP preprocessing between the loader
workers (PIL steps, uint8 pixels) and the device (float conversion and normalisation)."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .datasets import split_member
from .images import load_rgb
from .views import Corruption

log = logging.getLogger(__name__)


class ImageFiles(torch.utils.data.Dataset):
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


class TarImages(torch.utils.data.IterableDataset):
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


class DeviceNormalize:
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


class PilToUint8:
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


def split_preprocess(preprocess: Callable) -> tuple[Callable, DeviceNormalize] | None:
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
    return PilToUint8(head), DeviceNormalize(steps[-1].mean, steps[-1].std)
