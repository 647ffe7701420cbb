"""Image encoding against the decode limit: images/s of ``clustermine.encode.encode_images``
beside the images/s of decoding and preprocessing the same JPEGs with the same DataLoader
workers and no model (the bound on a CPU and on most GPU machines).

The JPEGs are synthetic, of ImageNet's typical size (400 × 350, quality 90, smooth colour
fields with texture noise: about ImageNet's bytes per image). Three models:

- ``stub``: a mean-pool and a linear layer behind the real 224-pixel CLIP preprocessing, so
  the model costs nothing and any gap to the decode limit is the pipeline's (loader, batching,
  transfer, bookkeeping);
- ``ViT-B-32`` (and any ``--arch``): random weights, what a CPU-only user gets (model-bound
  on a CPU; on a GPU the decode limit is the bound, see benchmarks/gpu_check.sh).

    python benchmarks/bench_encode.py                       # 1000 images, 2 workers
    python benchmarks/bench_encode.py --images 256 --arch   # stub only, a smoke run
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

SIZE = (400, 350)


def make_jpegs(root: Path, n: int, seed: int = 0, classes: int = 10) -> float:
    """``n`` JPEGs (quality 90) under ``root/<class>/``; returns the mean file size in kB."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        folder = root / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        low = rng.uniform(0, 255, size=(9, 8, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(low).resize(SIZE, Image.BICUBIC), np.float32)
        img += rng.normal(0, 10, size=img.shape)  # texture: what makes photos cost bytes
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        (folder / f"{i:06d}.jpg").write_bytes(buf.getvalue())
        total += buf.tell()
    return total / n / 1000


class StubModel(torch.nn.Module):
    """Costs nothing: mean over the pixels, one linear layer."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, dim)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=(2, 3)))


def stub_loaded(preprocess):
    from clustermine.models import LoadedModel

    return LoadedModel(StubModel().eval(), preprocess, None, torch.device("cpu"), "stub", "none")


def pil_part(preprocess) -> list:
    """The transforms of a torchvision Compose before its conversion to a tensor."""
    steps = []
    for t in preprocess.transforms:
        if "ToTensor" in type(t).__name__:
            break
        steps.append(t)
    return steps


def decode_rate(index, transform, workers: int, batch_size: int) -> float:
    """Images/s of the project's image dataset through a DataLoader, no model."""
    from clustermine.image_loading import ImageFiles

    data = ImageFiles(index.root, index.paths, transform, (1,), None)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    for _batch in loader:
        pass
    return len(index) / (time.perf_counter() - start)


def encode_rate(loaded, index, workers: int, batch_size: int, split: bool = True) -> float:
    """Images/s of encode_images; ``split=False`` runs the whole preprocessing in the workers
    and sends float32 tensors (the loader before uint8 transfer, kept as the baseline)."""
    from clustermine import encode

    real = encode.split_preprocess
    if not split:
        encode.split_preprocess = lambda preprocess: None
    try:
        start = time.perf_counter()
        out = encode.encode_images(loaded, index, batch_size=batch_size, num_workers=workers)
        seconds = time.perf_counter() - start
    finally:
        encode.split_preprocess = real
    assert len(out) == len(index)
    return len(index) / seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--workers", type=int, nargs="+", default=[2])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    p.add_argument("--arch", nargs="*", default=["ViT-B-32"],
                   help="open_clip architectures to time with random weights (none: stub only)")
    p.add_argument("--repeats", type=int, default=2, help="best of this many passes")
    args = p.parse_args(argv)
    import open_clip
    import PIL

    from clustermine.datasets import build_index

    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__} ({args.threads} threads), "
          f"Pillow {PIL.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        kb = make_jpegs(root, args.images)
        index = build_index({"type": "imagefolder", "root": str(root)})
        preprocess = open_clip.image_transform(224, is_train=False)
        print(f"{args.images} JPEGs {SIZE[0]}x{SIZE[1]}, quality 90, {kb:.0f} kB each; batch "
              f"{args.batch_size}; best of {args.repeats}", flush=True)

        def best(fn):
            return max(fn() for _ in range(args.repeats))

        pil_steps = torchvision.transforms.Compose(pil_part(preprocess))

        def decode_resize(img):  # the PIL part of the preprocessing: resize and crop
            pil_steps(img)
            return torch.zeros(1)

        for workers in args.workers:
            decode_only = best(lambda: decode_rate(
                index, lambda img: torch.zeros(1), workers, args.batch_size))  # fmt: skip
            limit = best(lambda: decode_rate(index, decode_resize, workers, args.batch_size))
            full = best(lambda: decode_rate(index, preprocess, workers, args.batch_size))
            print(f"workers {workers}: decode {decode_only:7.1f} img/s; decode + resize + crop "
                  f"(the limit) {limit:7.1f} img/s; the whole preprocessing (+ float "
                  f"tensor, normalise) {full:7.1f} img/s", flush=True)
            models = [("stub model", stub_loaded(preprocess))]
            for arch in args.arch:
                from clustermine.models import load_model

                models.append((f"{arch} (random weights, CPU)", load_model(arch, None, "cpu")))
            for name, loaded in models:
                for split, label in ((False, "float32 from the workers"),
                                     (True, "uint8 from the workers")):  # fmt: skip
                    rate = best(lambda: encode_rate(loaded, index, workers, args.batch_size,
                                                    split))  # fmt: skip
                    print(f"  embed_images, {name}, {label}: {rate:7.1f} img/s = "
                          f"{rate / limit:.2f} x the decode limit", flush=True)


if __name__ == "__main__":
    main()
