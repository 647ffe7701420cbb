"""Eq. 1 scoring: memory-bounded streaming vs the direct full-matrix computation.

Prints time, throughput and peak extra memory (resident set growth over the inputs and,
for streaming, the fitted detector) of scoring with both on the same data in the same run,
then how streaming grows with the number of images and of names. Every measurement runs in a
fresh process so peaks do not mix.

    python benchmarks/bench_scoring.py            # about 2 minutes on 2 CPU cores
    python benchmarks/bench_scoring.py --quick    # seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np


def _data(n_images: int, n_names: int, dim: int, n_pos: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    texts = rng.standard_normal((n_names, dim), dtype=np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    images = texts[rng.integers(0, n_names, n_images)] + 0.5 * rng.standard_normal(
        (n_images, dim), dtype=np.float32
    )
    return images, texts[:n_pos], texts[n_pos:]


def _direct(images, pos, neg, tau):
    """The obvious implementation: the whole [N, M] logit matrix, then two logsumexps."""
    import torch

    x = torch.nn.functional.normalize(torch.from_numpy(images), dim=1)
    t = torch.from_numpy(np.concatenate([pos, neg]))
    logits = (x @ t.T) / tau
    lse_pos = torch.logsumexp(logits[:, : len(pos)], dim=1).double()
    lse_neg = torch.logsumexp(logits[:, len(pos) :], dim=1).double()
    return (-torch.nn.functional.softplus(lse_neg - lse_pos)).numpy()


def _streaming(pos, neg, tau, budget_bytes):
    """A fitted Eq. 1 detector's scoring function (fitting normalises the label texts once)."""
    from clustermine.detectors import get_detector
    from clustermine.h5io import TextEmbeddings

    det = get_detector("eq1").fit(
        None,
        TextEmbeddings(pos, [""] * len(pos)),
        TextEmbeddings(neg, [""] * len(neg)),
        100.0,
        {"tau": tau},
        device="cpu",
        budget_bytes=budget_bytes,
    )
    return det.score


def _measure(kind, n_images, n_names, dim, n_pos, tau, budget_bytes, threads, queue):
    import torch

    torch.set_num_threads(threads)
    images, pos, neg = _data(n_images, n_names, dim, n_pos)
    if kind == "direct":
        run = lambda x: _direct(x, pos, neg, tau)  # noqa: E731
    else:
        run = _streaming(pos, neg, tau, budget_bytes)
    run(images[:8])  # warm-up: imports and allocator, outside the timing
    base = _reset_peak()
    start = time.perf_counter()
    scores = run(images)
    seconds = time.perf_counter() - start
    queue.put({"seconds": seconds, "peak_mb": (_peak_kb() - base) / 1024, "scores": scores})


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> int:
    """Current resident set (kB), after resetting the peak where Linux allows it, so the
    peak measured next belongs to the scoring alone and not to building the test data."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kb("VmRSS") or 0


def _peak_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(kind, n_images, n_names, dim=512, n_pos=1000, tau=0.001, budget_mb=64, threads=2):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_measure,
        args=(kind, n_images, n_names, dim, n_pos, tau, budget_mb * 2**20, threads, queue),
    )
    proc.start()
    out = queue.get()
    proc.join()
    out.update(kind=kind, n_images=n_images, n_names=n_names)
    return out


def _row(r):
    pairs = r["n_images"] * r["n_names"]
    return (
        f"{r['kind']:>9} {r['n_images']:>8} {r['n_names']:>8} {r['seconds']:>8.2f} "
        f"{r['n_images'] / r['seconds']:>10.0f} {pairs / r['seconds'] / 1e9:>9.2f} "
        f"{r['peak_mb']:>9.0f}"
    )


HEADER = f"{'impl':>9} {'images':>8} {'names':>8} {'seconds':>8} {'images/s':>10} {'Gpairs/s':>9} {'peak MB':>9}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--names", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--budget-mb", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = ap.parse_args()
    n, m = (500, 5000) if args.quick else (args.images, args.names)
    common = dict(dim=args.dim, budget_mb=args.budget_mb, threads=args.threads)
    print(f"Eq. 1, tau=0.001, D={args.dim}, budget {args.budget_mb} MB, {args.threads} threads")
    print(HEADER)
    direct = measure("direct", n, m, **common)
    stream = measure("streaming", n, m, **common)
    print(_row(direct))
    print(_row(stream))
    diff = np.max(
        np.abs(direct["scores"] - stream["scores"]) / np.maximum(1, np.abs(direct["scores"]))
    )
    print(
        f"streaming / direct: time x{stream['seconds'] / direct['seconds']:.2f}, "
        f"peak memory x{stream['peak_mb'] / max(direct['peak_mb'], 1e-9):.3f}; "
        f"full float32 matrix would be {n * m * 4 / 2**20:.0f} MB; "
        f"max relative score difference {diff:.1e}"
    )
    print("\ngrowth of streaming with images (names fixed) and names (images fixed)")
    print(HEADER)
    for k in (0.5, 2):
        print(_row(measure("streaming", int(n * k), m, **common)))
    for k in (0.5, 2):
        print(_row(measure("streaming", n, int(m * k), **common)))


if __name__ == "__main__":
    main()
