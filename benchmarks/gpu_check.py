"""The GPU check: the heavy stages of the workflow at ImageNet size on one CUDA GPU, with the
peak GPU memory of each. Offline: no weights are downloaded (random weights compute the same
as real ones) and every input is synthetic.

Stages (``--only`` picks some; the whole check is sized for under 8 minutes on one GPU):

- ``encode``: images/s of ViT-B/32, ViT-L/14 and ViT-H/14 (open_clip, random weights, mixed
  float16, batches of 224-pixel images already on the GPU: the model alone);
- ``pipeline``: ``embed_images`` end to end (synthetic 400 × 350 JPEGs, DataLoader workers,
  ViT-B/32) against the decode + resize limit of the same JPEGs with the same workers;
- ``knn``: exact cosine kNN (k = 50) of 1.28M × 1024 embeddings, torch on the GPU (and faiss's
  GPU search when a CUDA build of faiss is installed), timed on ``--knn-queries`` queries
  against all 1.28M rows and scaled to all queries (said so in the output);
- ``kmeans``: spherical k-means, C = 4000, on 1.28M × 1024: k-means++ and k-means‖ seeding
  (of the default sample) side by side, and ``--kmeans-iters`` Lloyd iterations after the
  default (k-means‖) seeding;
- ``temi``: one TEMI epoch with 50 heads, C = 4000, on 1.28M × 1024 (pairs from a random
  neighbour graph: the compute is the same as with the real one);
- ``zeroshot``: zero-shot top-5 and Eq. 1 scoring of 50,000 images against 270,000 names;
- ``features``: what GL-MCM and CoVer add to the encoding: ViT-B/16 (224 px, 196 patches)
  with and without its local patch features, and the CPU time of CoVer's 12 recommended
  views of an image (the corruptions run on the CPU, one core);
- ``scale``: the stages that take the workflow beyond ImageNet-1K: the zero-shot job as the
  workflow runs it, its ID-train file (1.28M × 1024, float16 storage) read from disk in row
  blocks against 79,403 names, and the faiss IVF kNN graph (k = 50, nprobe 16) of
  ``--ivf-rows`` rows with its recall measured (on the GPU with a CUDA build of faiss, else
  on the CPU, said so).

    bash benchmarks/gpu_check.sh                  # everything
    bash benchmarks/gpu_check.sh --only encode knn --out gpu.json

Without CUDA it exits with status 2 and says so: GPU figures are never made up on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

NO_CUDA = 2
STAGES = ("encode", "pipeline", "knn", "kmeans", "temi", "zeroshot", "features", "scale")
N_TRAIN, DIM, K = 1_281_167, 1024, 50
ARCHS = {"ViT-B-32": 1024, "ViT-L-14": 512, "ViT-H-14": 256}  # architecture: batch size
# The device of every stage. Only tests set it to "cpu", to run the stages' code at toy size;
# main() refuses to run without CUDA.
DEVICE = "cuda"


def _cuda() -> bool:
    return DEVICE.startswith("cuda")


def _sync() -> None:
    import torch

    if _cuda():
        torch.cuda.synchronize()


def _peak_gb() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if _cuda() else 0.0


def _reset_peak() -> None:
    import torch

    if _cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def refuse_without_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is available (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); this check "
            "measures GPU figures only and does not run on a CPU. Nothing was measured.",
            file=sys.stderr,
        )
        sys.exit(NO_CUDA)


def gpu_stage(name: str, results: dict):
    """Run one stage: wall time, peak GPU memory, and its own figures (or the error)."""

    def wrap(fn):
        _sync()
        _reset_peak()
        start = time.perf_counter()
        try:
            figures = fn()
            error = None
        except Exception as err:  # noqa: BLE001 - one failing stage must not hide the others
            figures, error = {}, f"{type(err).__name__}: {err}"
        _sync()
        row = {"seconds": round(time.perf_counter() - start, 2), "peak_gpu_gb": _peak_gb(),
               **figures}  # fmt: skip
        if error:
            row["error"] = error
        results[name] = row
        print(f"[{name}] " + ", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        return row

    return wrap


def synthetic_embeddings(n: int, dim: int, seed: int = 0, concepts: int = 1000):
    """CLIP-like rows on the GPU: concept directions, noise, a shared offset, random norms."""
    import torch

    g = torch.Generator(device=DEVICE).manual_seed(seed)
    unit = torch.nn.functional.normalize
    concepts = min(concepts, n)
    centres = unit(torch.randn(concepts, dim, device=DEVICE, generator=g), dim=1)
    y = torch.randint(concepts, (n,), device=DEVICE, generator=g)
    x = torch.empty(n, dim, device=DEVICE)
    for lo in range(0, n, 131072):
        hi = min(n, lo + 131072)
        noise = unit(torch.randn(hi - lo, dim, device=DEVICE, generator=g), dim=1)
        x[lo:hi] = unit(centres[y[lo:hi]] + 0.8 * noise, dim=1) + 0.7 * centres[0]
    return x * (8 + 4 * torch.rand(n, 1, device=DEVICE, generator=g))


def stage_encode(args) -> dict:
    import torch

    out = {}
    for arch in args.archs:
        batch = args.encode_batch or ARCHS.get(arch, 256)
        _reset_peak()
        model, x, amp = _random_model(arch, batch)
        with torch.inference_mode(), amp:
            rate = _images_per_s(model.encode_image, x, args.encode_seconds)
        out[f"{arch}_images_per_s"] = round(rate, 1)
        out[f"{arch}_batch"] = batch
        out[f"{arch}_peak_gpu_gb"] = _peak_gb()
        del model
    return out


def _random_model(arch: str, batch: int):
    """An open_clip model with random weights on ``DEVICE``, a random input batch of its
    image size, and the autocast context of its timing (float16 on CUDA)."""
    import contextlib

    import open_clip
    import torch

    from clustermine import model_configs

    model_configs.register()
    model = open_clip.create_model(arch, pretrained=None, device=DEVICE).eval()
    size = model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    x = torch.randn(batch, 3, *size, device=DEVICE)
    amp = torch.autocast("cuda", dtype=torch.float16) if _cuda() else contextlib.nullcontext()
    return model, x, amp


def _images_per_s(fn, x, seconds: float) -> float:
    """Images per second of ``fn`` on the batch ``x``, after two warm-up calls."""
    for _ in range(2):
        fn(x)
    _sync()
    start, steps = time.perf_counter(), 0
    while steps == 0 or time.perf_counter() - start < seconds:
        fn(x)
        steps += 1
    _sync()
    return steps * len(x) / (time.perf_counter() - start)


def stage_features(args) -> dict:
    import numpy as np
    import torch

    from clustermine.local_features import encode_local
    from clustermine.views import PRESETS, Corruption

    arch, batch = args.features_arch, args.encode_batch or 512
    model, x, amp = _random_model(arch, batch)
    size = tuple(x.shape[-2:])
    with torch.inference_mode(), amp:
        plain = _images_per_s(model.encode_image, x, args.encode_seconds)
        local = _images_per_s(lambda b: encode_local(model, b, arch), x, args.encode_seconds)
        patches, dim = encode_local(model, x[:1], arch)[1].shape[1:]
    pixels = np.random.default_rng(0).integers(0, 255, (args.view_images, *size, 3), np.uint8)
    views = [Corruption(v) for v in PRESETS["recommended"]]
    start = time.perf_counter()
    for view in views:
        for img in pixels:
            view.pixels(img)
    per_image = (time.perf_counter() - start) / len(pixels)
    return {"arch": arch, "batch": batch, "global_images_per_s": round(plain, 1),
            "with_local_images_per_s": round(local, 1), "local_cost": round(plain / local, 3),
            "patches": int(patches), "local_kb_per_image": round(patches * dim * 2 / 1024, 1),
            "recommended_views": len(views),
            "views_cpu_s_per_image_one_core": round(per_image, 4)}  # fmt: skip


def stage_pipeline(args) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_encode import decode_rate, make_jpegs, pil_part

    import open_clip
    import torchvision

    from clustermine.datasets import build_index
    from clustermine.encode import encode_images
    from clustermine.models import load_model

    workers = args.workers or min(16, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        kb = make_jpegs(root, args.jpegs)
        index = build_index({"type": "imagefolder", "root": str(root)})
        steps = torchvision.transforms.Compose(pil_part(open_clip.image_transform(224, False)))

        def decode_resize(img):
            steps(img)
            return torch.zeros(1)

        limit = decode_rate(index, decode_resize, workers, 256)
        loaded = load_model(args.pipeline_arch, None, device=DEVICE)
        encode_images(loaded, index, stop=min(512, len(index)), batch_size=256,
                      num_workers=workers)  # warm-up  # fmt: skip
        start = time.perf_counter()
        encode_images(loaded, index, batch_size=256, num_workers=workers)
        rate = len(index) / (time.perf_counter() - start)
    return {"workers": workers, "jpeg_kb": round(kb), "decode_limit_images_per_s": round(limit, 1),
            "arch": args.pipeline_arch, "embed_images_per_s": round(rate, 1),
            "ratio_to_decode_limit": round(rate / limit, 3)}  # fmt: skip


def stage_knn(args, x) -> dict:
    import torch

    from clustermine.knn import cosine_knn

    n, q, k = len(x), min(args.knn_queries, len(x)), min(K, len(x) - 1)
    _sync()
    start = time.perf_counter()
    # copy=False as the knn job: the rows are normalised where they lie (one copy on the GPU).
    nn = cosine_knn(x, k, device=DEVICE, budget_bytes=args.budget_mb * 2**20, query_rows=(0, q),
                    copy=False)  # fmt: skip
    _sync()
    seconds = time.perf_counter() - start
    out = {"queries": q, "torch_seconds": round(seconds, 2),
           "torch_seconds_all_queries_scaled": round(seconds * n / q, 1)}  # fmt: skip
    try:
        import faiss

        gpus = faiss.get_num_gpus() if _cuda() else 0
    except (ImportError, AttributeError):
        gpus = 0
    if gpus:
        import numpy as np

        from clustermine.knn_ivf import neighbour_recall

        u = torch.nn.functional.normalize(x, dim=1).cpu().numpy()
        res = faiss.StandardGpuResources()
        start = time.perf_counter()
        _, idx = faiss.knn_gpu(res, u[:q], u, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        seconds = time.perf_counter() - start
        drop = idx == np.arange(q)[:, None]
        drop[~drop.any(axis=1), -1] = True
        out["faiss_gpu_seconds"] = round(seconds, 2)
        out["faiss_gpu_seconds_all_queries_scaled"] = round(seconds * n / q, 1)
        out["faiss_gpu_recall_vs_torch"] = neighbour_recall(idx[~drop].reshape(q, k), nn.indices)
    else:
        out["faiss_gpu"] = "not installed (a CUDA build of faiss adds its GPU search here)"
    return out


def stage_kmeans(args, x_host) -> dict:
    import torch

    from clustermine.clustering.kmeans import KMeansConfig, fit_kmeans, init_rows
    from clustermine.clustering.seeding import Distances, kmeans_parallel, kmeans_plus_plus

    budget, c = args.budget_mb * 2**20, args.clusters
    cfg = KMeansConfig(num_clusters=c)
    data = torch.nn.functional.normalize(torch.from_numpy(x_host).to(DEVICE), dim=1)
    gen = torch.Generator().manual_seed(0)
    sample = init_rows(len(data), cfg, gen)
    rows = data if sample is None else data[sample.to(DEVICE)]
    seconds = {}
    for name, seed_with in (("kmeans++", kmeans_plus_plus), ("kmeans||", kmeans_parallel)):
        _sync()
        start = time.perf_counter()
        seed_with(Distances(rows, "cosine", budget), c, torch.Generator().manual_seed(0), None)
        _sync()
        seconds[name] = time.perf_counter() - start
    seeding = seconds[cfg.init]
    del data, rows
    start = time.perf_counter()
    result = fit_kmeans(x_host, c, {"max_iter": args.kmeans_iters, "tol": 0}, device=DEVICE,
                        budget_bytes=budget, copy=False)  # fmt: skip
    fit = time.perf_counter() - start
    iters = int(result.attrs["iterations"])
    return {"seeding_seconds": {k: round(v, 1) for k, v in seconds.items()},
            "default_seeding": cfg.init, "fit_seconds": round(fit, 1),
            "iterations": iters,
            "seconds_per_iteration": round((fit - seeding) / max(1, iters), 2),
            "backend": result.attrs["backend"]}  # fmt: skip


def stage_temi(args, x_host) -> dict:
    import numpy as np

    from clustermine.clustering.temi import fit_temi

    rng = np.random.default_rng(0)
    k = min(K, len(x_host) - 1)
    graph = rng.integers(len(x_host), size=(len(x_host), k))
    params = {"heads": args.heads, "epochs": 1, "warmup_epochs": 0, "knn": k}
    start = time.perf_counter()
    result = fit_temi(x_host, args.clusters, params, neighbors=graph, device=DEVICE,
                      budget_bytes=args.budget_mb * 2**20, copy=False)  # fmt: skip
    seconds = time.perf_counter() - start
    return {"epoch_seconds_with_assignment": round(seconds, 1),
            "samples_per_s": round(len(x_host) / seconds, 1),
            "extrapolated_100_epochs_minutes": round(100 * seconds / 60, 1),
            "nonempty_clusters": int((result.sizes > 0).sum())}  # fmt: skip


def stage_zeroshot(args) -> dict:
    import torch

    from clustermine.detectors import get_detector
    from clustermine.h5io import TextEmbeddings
    from clustermine.zeroshot import zero_shot_topk

    budget, c = args.budget_mb * 2**20, args.clusters
    images = synthetic_embeddings(args.images, args.dim, seed=1).cpu().numpy()
    names = torch.nn.functional.normalize(synthetic_embeddings(args.names, args.dim, seed=2), dim=1)
    names = names.cpu().numpy()
    _sync()
    start = time.perf_counter()
    zero_shot_topk(images, names, 5, budget, DEVICE)
    _sync()
    zs = time.perf_counter() - start
    det = get_detector("eq1").fit(
        None,
        TextEmbeddings(names[:c], [str(i) for i in range(c)]),
        TextEmbeddings(names[c:], [str(i) for i in range(c, len(names))]),
        100.0, {"tau_factor": 0.1}, device=DEVICE, budget_bytes=budget,
    )  # fmt: skip
    start = time.perf_counter()
    det.score(images)
    _sync()
    return {"zero_shot_top5_seconds": round(zs, 2),
            "eq1_score_seconds": round(time.perf_counter() - start, 2)}  # fmt: skip


def stage_scale(args) -> dict:
    import numpy as np

    from clustermine.h5io import ImageEmbeddings, write_image_embeddings
    from clustermine.image_rows import open_image_rows
    from clustermine.knn import approximate_knn
    from clustermine.zeroshot import zero_shot_topk

    n = args.stream_rows
    x = synthetic_embeddings(n, args.dim, seed=3).cpu().numpy().astype(np.float16)
    names = synthetic_embeddings(args.stream_names, args.dim, seed=4).cpu().numpy()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.h5"
        start = time.perf_counter()
        write_image_embeddings(path, ImageEmbeddings(
            x, np.zeros(n, np.int64), [f"train/{i}.JPEG" for i in range(n)], None,
            {"model_arch": "synthetic", "model_pretrained": None, "storage_dtype": "float16"}))
        out["file_gb"] = round(path.stat().st_size / 2**30, 2)
        out["write_seconds"] = round(time.perf_counter() - start, 1)
        del x
        _sync()
        start = time.perf_counter()
        with open_image_rows(path) as images:
            zero_shot_topk(images.embeddings, names, 5, args.budget_mb * 2**20, DEVICE)
        _sync()
        seconds = time.perf_counter() - start
    out["streamed_zero_shot_seconds"] = round(seconds, 1)
    out["streamed_zero_shot_images_per_s"] = round(n / seconds)
    rows = synthetic_embeddings(args.ivf_rows, args.dim, seed=5).cpu().numpy()
    start = time.perf_counter()
    nn = approximate_knn(rows, min(K, len(rows) - 1), nprobe=16, device=DEVICE)
    out["ivf_seconds"] = round(time.perf_counter() - start, 1)
    out.update({f"ivf_{key}": nn.attrs[key] for key in ("device", "nlist", "recall")})
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--out", help="write the figures as JSON to this file")
    p.add_argument("--budget-mb", type=int, default=4096, help="compute.memory_budget_mb")
    p.add_argument("--encode-seconds", type=float, default=10.0, help="timed per model")
    p.add_argument("--jpegs", type=int, default=2000)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: the cores)")
    p.add_argument("--knn-queries", type=int, default=131_072)
    p.add_argument("--kmeans-iters", type=int, default=10)
    p.add_argument("--n", type=int, default=N_TRAIN, help="rows of the kNN/k-means/TEMI data")
    p.add_argument("--dim", type=int, default=DIM)
    p.add_argument("--clusters", type=int, default=4000, help="C of k-means and TEMI")
    p.add_argument("--heads", type=int, default=50, help="TEMI heads")
    p.add_argument("--images", type=int, default=50_000, help="images scored (zero-shot)")
    p.add_argument("--names", type=int, default=270_000, help="names scored against")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), help="models timed by encode")
    p.add_argument("--encode-batch", type=int, default=0, help="0: per model (ViT-H: 256)")
    p.add_argument("--pipeline-arch", default="ViT-B-32")
    p.add_argument("--features-arch", default="ViT-B-16", help="model of the features stage")
    p.add_argument("--view-images", type=int, default=32, help="images of the views timing")
    p.add_argument("--stream-rows", type=int, default=N_TRAIN, help="rows of the streamed file")
    p.add_argument("--stream-names", type=int, default=79_403, help="names of the streamed job")
    p.add_argument("--ivf-rows", type=int, default=400_000, help="rows of the IVF graph")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    refuse_without_cuda()
    run(args)


def run(args) -> dict:
    """Every stage of ``args.only`` on ``DEVICE``; prints and returns the figures."""
    import torch

    name = torch.cuda.get_device_name() if _cuda() else "cpu (a test of the code, no figures)"
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if _cuda() else 0
    print(f"gpu_check: {name} ({memory:.0f} GiB), {os.cpu_count()} CPUs, {platform.machine()}, "
          f"torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    results: dict = {"device": name, "torch": torch.__version__, "sizes": {
        "n": args.n, "dim": args.dim, "clusters": args.clusters, "heads": args.heads,
        "images": args.images, "names": args.names}}  # fmt: skip
    if "encode" in args.only:
        gpu_stage("encode", results)(lambda: stage_encode(args))
    if "pipeline" in args.only:
        gpu_stage("pipeline", results)(lambda: stage_pipeline(args))
    if {"knn", "kmeans", "temi"} & set(args.only):
        x = synthetic_embeddings(args.n, args.dim)
        if "knn" in args.only:
            gpu_stage("knn", results)(lambda: stage_knn(args, x))
        x_host = x.cpu().numpy()
        del x
        if "kmeans" in args.only:
            gpu_stage("kmeans", results)(lambda: stage_kmeans(args, x_host))
        if "temi" in args.only:
            gpu_stage("temi", results)(lambda: stage_temi(args, x_host))
    if "zeroshot" in args.only:
        gpu_stage("zeroshot", results)(lambda: stage_zeroshot(args))
    if "features" in args.only:
        gpu_stage("features", results)(lambda: stage_features(args))
    if "scale" in args.only:
        gpu_stage("scale", results)(lambda: stage_scale(args))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    failed = [name for name, row in results.items() if isinstance(row, dict) and "error" in row]
    if failed:
        print(f"gpu_check: stages failed: {failed}", file=sys.stderr)
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
