"""Train the demo model's image tower against its frozen text tower (docs/demo.md).

The model is the open_clip architecture ``clustermine-demo-minilm``: a small CNN image tower
and the all-MiniLM-L6-v2 sentence encoder as text tower. Only the image tower (and the logit
scale) learn: every image is pulled towards the text embedding of its caption
``"a photo of a {class}."`` by the image-to-text half of the CLIP contrastive loss, taken over
all distinct captions of the training set rather than the captions of one batch, because a
batch holds many images of the same class and their captions would be false negatives.
The checkpoint holds the state dict of the whole model, so
``open_clip.create_model_and_transforms(arch, pretrained=<checkpoint>)`` loads it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from clustermine.demo.data import list_image_folder
from clustermine.atomic import atomic_path

log = logging.getLogger(__name__)

DEMO_ARCH = "clustermine-demo-minilm"
CAPTION = "a photo of a {}."
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of the image-tower training; all recorded in the checkpoint."""

    epochs: float = 4
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    # How often each image of a split is shown per epoch: the few stamps would be drowned out
    # by 60,000 Fashion-MNIST images otherwise.
    repeats: Mapping[str, int] = field(default_factory=lambda: {"tuxpaint-train": 8})
    # At most this many images per split (None: all); for short test runs.
    limit_per_split: int | None = None
    # Name each class also by the other lemmas of its WordNet synset (at most this many names
    # in all, 1 = the class name only); see `caption_names`.
    names_per_class: int = 3
    seed: int = 0
    threads: int | None = None
    log_every: int = 50


@dataclass
class ImageSet:
    """Preprocessed images kept as uint8 (lossless: the transform's tensor is bytes / 255)."""

    pixels: torch.Tensor  # uint8 [N, 3, H, W]
    targets: torch.Tensor  # int64 [N], index into `classes`
    classes: list[str]
    sources: list[str] = field(default_factory=list)  # split of each image

    def __len__(self) -> int:
        return len(self.targets)


def split_normalize(preprocess: T.Compose) -> tuple[T.Compose, T.Normalize]:
    """Split open_clip's eval transform into (everything before Normalize, Normalize)."""
    steps = list(getattr(preprocess, "transforms", []))
    if not steps or not isinstance(steps[-1], T.Normalize):
        raise ValueError(f"expected an open_clip transform ending in Normalize, got {preprocess}")
    return T.Compose(steps[:-1]), steps[-1]


def normalize_batch(pixels: torch.Tensor, normalize: T.Normalize) -> torch.Tensor:
    mean = torch.as_tensor(normalize.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.as_tensor(normalize.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def load_pixels(
    paths: Sequence[os.PathLike], to_tensor: T.Compose, threads: int = 1
) -> torch.Tensor:
    """Read and preprocess images (without Normalize) into a uint8 tensor."""

    def one(path):
        with Image.open(path) as img:
            return (to_tensor(img) * 255.0).round().to(torch.uint8)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return torch.stack(list(pool.map(one, paths, chunksize=256)))


def read_image_set(
    folders: Mapping[str, os.PathLike],
    to_tensor: T.Compose,
    limit_per_split: int | None = None,
    seed: int = 0,
    threads: int = 1,
) -> ImageSet:
    """Images of several image folders, their class names pooled into one class list."""
    rng = np.random.default_rng(seed)
    paths, names, sources = [], [], []
    for split, folder in folders.items():
        items = list_image_folder(folder)
        if limit_per_split is not None and len(items) > limit_per_split:
            keep = np.sort(rng.choice(len(items), limit_per_split, replace=False))
            items = [items[i] for i in keep]
        paths += [p for p, _ in items]
        names += [c for _, c in items]
        sources += [split] * len(items)
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    pixels = load_pixels(paths, to_tensor, threads)
    targets = torch.tensor([index[c] for c in names], dtype=torch.int64)
    return ImageSet(pixels, targets, classes, sources)


@torch.no_grad()
def encode_captions(
    model, tokenizer, classes: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """Normalised text embeddings of ``"a photo of a {class}."``, one row per class."""
    model.eval()
    out = []
    for start in range(0, len(classes), batch_size):
        tokens = tokenizer([CAPTION.format(c) for c in classes[start : start + batch_size]])
        out.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    return torch.cat(out)


def caption_names(name: str, limit: int = 3) -> list[str]:
    """The class name, then the other lemmas of its first WordNet noun synset (``limit`` in all).

    Web captions call one object by several names ("sneaker", "gym shoe", "tennis shoe"); a
    real CLIP has seen them all. Training towards the mean of these captions gives the demo's
    image tower the same breadth, so names mined from a corpus can be synonyms of the class
    name, not only look-alike strings. Names that WordNet does not know stay alone.
    """
    if limit <= 1:
        return [name]
    from clustermine.wordnet import open_wordnet

    synsets = open_wordnet().synsets(name.replace(" ", "_"), pos="n")
    names = [name]
    for lemma in synsets[0].lemma_names() if synsets else []:
        lemma = lemma.replace("_", " ").lower()
        if lemma not in names:
            names.append(lemma)
    return names[:limit]


@torch.no_grad()
def encode_class_prompts(
    model, tokenizer, classes: Sequence[str], names_per_class: int = 1
) -> torch.Tensor:
    """One normalised text embedding per class: the mean over the captions of its names."""
    groups = [caption_names(c, names_per_class) for c in classes]
    if names_per_class > 1:
        log.info(
            "%d of %d classes also named by WordNet synonyms",
            sum(len(g) > 1 for g in groups),
            len(groups),
        )
    flat = encode_captions(model, tokenizer, [n for g in groups for n in g])
    out, start = [], 0
    for g in groups:
        out.append(F.normalize(flat[start : start + len(g)].mean(0), dim=-1))
        start += len(g)
    return torch.stack(out)


@torch.no_grad()
def encode_pixels(
    model, pixels: torch.Tensor, normalize: T.Normalize, batch_size: int = 512
) -> torch.Tensor:
    """Image embeddings (not normalised) of preprocessed uint8 images."""
    model.eval()
    return torch.cat(
        [
            model.encode_image(normalize_batch(pixels[s : s + batch_size], normalize)).float()
            for s in range(0, len(pixels), batch_size)
        ]
    )


def zero_shot_accuracy(
    image_features: torch.Tensor, targets: torch.Tensor, text_features: torch.Tensor
) -> float:
    pred = (F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T).argmax(1)
    return float((pred == targets).float().mean())


def _lr_at(step: int, total: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
    return settings.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_image_tower(
    model,
    data: ImageSet,
    text_features: torch.Tensor,
    normalize: T.Normalize,
    settings: TrainSettings,
) -> dict[str, Any]:
    """Train ``model.visual`` and ``model.logit_scale`` in place; return a summary."""
    generator = torch.Generator().manual_seed(settings.seed)
    repeats = torch.tensor([settings.repeats.get(s, 1) for s in data.sources])
    epoch_index = torch.repeat_interleave(torch.arange(len(data)), repeats)
    steps_per_epoch = max(1, len(epoch_index) // settings.batch_size)
    total = max(1, round(settings.epochs * steps_per_epoch))

    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.visual.parameters())
    for p in params + [model.logit_scale]:
        p.requires_grad_(True)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1] + [model.logit_scale]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
    )
    text_features = text_features.detach()
    model.eval()
    model.visual.train()
    log.info(
        "training %d steps (%.2f epochs of %d images, batch %d), %d captions",
        total, settings.epochs, len(epoch_index), settings.batch_size, len(data.classes),
    )  # fmt: skip
    start, step, running = time.perf_counter(), 0, []
    order = torch.empty(0, dtype=torch.int64)
    while step < total:
        if len(order) < settings.batch_size:
            order = epoch_index[torch.randperm(len(epoch_index), generator=generator)]
        batch, order = order[: settings.batch_size], order[settings.batch_size :]
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, total, settings)
        images = normalize_batch(data.pixels[batch], normalize)
        features = F.normalize(model.visual(images), dim=-1)
        logits = model.logit_scale.exp() * features @ text_features.T
        loss = F.cross_entropy(logits, data.targets[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        running.append(loss.item())
        step += 1
        if step % settings.log_every == 0 or step == total:
            log.info(
                "step %d/%d  loss %.4f  logit scale %.1f  lr %.2e  %.0f s",
                step, total, float(np.mean(running)), model.logit_scale.exp().item(),
                opt.param_groups[0]["lr"], time.perf_counter() - start,
            )  # fmt: skip
            running = []
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {
        "steps": total,
        "images_per_epoch": len(epoch_index),
        "train_seconds": time.perf_counter() - start,
        "final_loss": float(loss.item()),
        "logit_scale": float(model.logit_scale.exp().item()),
    }


def create_demo_model(arch: str = DEMO_ARCH, pretrained: str | None = None):
    """Build ``arch`` (a shipped config) through open_clip; return (model, preprocess, tokenizer)."""
    import open_clip

    from clustermine import model_configs

    model_configs.require(arch)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
    return model, preprocess, open_clip.get_tokenizer(arch)


def save_checkpoint(model, path: os.PathLike, metadata: Mapping[str, Any]) -> None:
    """Save the whole model's state dict the way open_clip's ``pretrained=<file>`` reads it."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "clustermine": dict(metadata)}, tmp)


def train_demo_model(
    train_folders: Mapping[str, os.PathLike],
    checkpoint: os.PathLike,
    settings: TrainSettings = TrainSettings(),
    eval_folder: os.PathLike | None = None,
    arch: str = DEMO_ARCH,
):
    """Train the demo image tower on ``train_folders`` and save the checkpoint.

    Returns ``(model, summary)``; with ``eval_folder`` (an image folder whose class names are
    the zero-shot classes, e.g. Fashion-MNIST test) the summary holds its zero-shot accuracy.
    """
    threads = settings.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    model, preprocess, tokenizer = create_demo_model(arch)
    to_tensor, normalize = split_normalize(preprocess)
    data = read_image_set(
        train_folders, to_tensor, settings.limit_per_split, settings.seed, threads
    )
    counts = {s: data.sources.count(s) for s in train_folders}
    log.info("read %d training images %s in %.0f s", len(data), counts, time.perf_counter() - t0)
    text_features = encode_class_prompts(model, tokenizer, data.classes, settings.names_per_class)
    torch.manual_seed(settings.seed)  # the image tower's initial weights do not depend on I/O
    summary = {
        "arch": arch,
        "settings": asdict(settings) | {"threads": threads},
        "train_images": counts,
        "captions": len(data.classes),
        "caption_template": CAPTION,
        "torch": str(torch.__version__),
    }
    summary |= train_image_tower(model, data, text_features, normalize, settings)
    if eval_folder is not None:
        summary["zero_shot"] = evaluate_zero_shot(
            model, tokenizer, eval_folder, to_tensor, normalize, threads
        )
        log.info("zero-shot accuracy on %s: %.4f", eval_folder, summary["zero_shot"]["accuracy"])
    summary["total_seconds"] = time.perf_counter() - t0
    save_checkpoint(model, checkpoint, summary)
    log.info("saved %s (%.0f s in all)", checkpoint, summary["total_seconds"])
    return model, summary


def evaluate_zero_shot(
    model, tokenizer, folder, to_tensor, normalize, threads: int = 1
) -> dict[str, Any]:
    """Zero-shot top-1 accuracy on an image folder with its own class names as the classes."""
    data = read_image_set({"eval": folder}, to_tensor, threads=threads)
    text = encode_captions(model, tokenizer, data.classes)
    feats = encode_pixels(model, data.pixels, normalize)
    return {
        "folder": str(folder),
        "images": len(data),
        "accuracy": zero_shot_accuracy(feats, data.targets, text),
    }


def checkpoint_metadata(path: os.PathLike) -> dict[str, Any]:
    """The training summary stored beside the weights by ``save_checkpoint``."""
    from clustermine.models import CheckpointUnreadable, load_torch_file

    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise CheckpointUnreadable(str(path), f"it holds a {type(obj).__name__}, not a dict")
    return dict(obj.get("clustermine", {}))
