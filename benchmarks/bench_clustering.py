"""Benchmarks of the clustering stage; prints numbers for docs/clustering.md.

1. TEMI training throughput with H heads as stacked tensors (one batched product per layer)
   against the same heads as separate modules run in a Python loop (as the TEMI reference
   code does), both on identical data and hyperparameters.
2. Exact cosine kNN (clustermine.knn, its torch code) against scikit-learn's brute-force
   NearestNeighbors(metric="cosine"): time and peak memory, each measured in a fresh process.
3. How the kNN time grows with N.
4. k-means++ seeding from a sample of rows (`init_size`, the default for large N) against
   seeding from every row: time of the whole fit and its final inertia, same data and seed.

faiss against the torch code and scikit-learn, at ImageNet sizes: benchmarks/bench_backends.py.

    python benchmarks/bench_clustering.py            # defaults: a few minutes on 2 CPU cores
    python benchmarks/bench_clustering.py --quick    # smaller sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clustermine.clustering.temi import TEMIConfig, TEMITrainer, temi_loss
from clustermine.compute import pick_device


class LoopHead(nn.Module):
    """One TEMI head as ordinary modules: MLP, L2-norm, weight-normalised linear layer."""

    def __init__(self, in_dim: int, num_clusters: int, hidden: int, bottleneck: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        self.last = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck, num_clusters, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


class LoopTrainer:
    """The same training step as TEMITrainer.step, one head at a time."""

    def __init__(self, cfg: TEMIConfig, in_dim: int, device: torch.device) -> None:
        self.cfg = cfg

        def heads() -> nn.ModuleList:
            return nn.ModuleList(
                LoopHead(in_dim, cfg.num_clusters, cfg.hidden_dim, cfg.bottleneck_dim)
                for _ in range(cfg.heads)
            ).to(device)

        self.student, self.teacher = heads(), heads()
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.prior = [
            torch.full((1, cfg.num_clusters), 1 / cfg.num_clusters, device=device)
            for _ in range(cfg.heads)
        ]
        self.optimizer = torch.optim.AdamW(
            self.student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        cfg, b = self.cfg, len(x)
        xy = torch.cat([x, y])
        with torch.no_grad():
            t_logp = [F.log_softmax(t(xy) / cfg.teacher_temp, -1) for t in self.teacher]
            weight = torch.stack([(t[:b].exp() * t[b:].exp()).sum(-1) for t in t_logp]).mean(0)
            for prior, t in zip(self.prior, t_logp):
                prior.mul_(cfg.prior_momentum).add_(
                    t.exp().mean(0, keepdim=True), alpha=1 - cfg.prior_momentum
                )
        losses = []
        for s, t, prior in zip(self.student, t_logp, self.prior):
            s_logp = F.log_softmax(s(xy) / cfg.student_temp, -1)
            losses.append(
                temi_loss(
                    s_logp[None, :b],
                    s_logp[None, b:],
                    t[None, :b],
                    t[None, b:],
                    prior,
                    cfg.beta,
                    weight,
                )[0]
            )
        losses = torch.stack(losses)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        self.optimizer.step()
        with torch.no_grad():
            m = cfg.teacher_momentum
            for t, s in zip(self.teacher.parameters(), self.student.parameters()):
                t.mul_(m).add_(s.detach(), alpha=1 - m)
        return losses.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_temi(args: argparse.Namespace, device: torch.device) -> dict:
    cfg = TEMIConfig(num_clusters=args.temi_c, heads=args.heads, batch_size=args.temi_batch)
    gen = torch.Generator().manual_seed(0)
    n, d, b = args.temi_n, args.dim, args.temi_batch
    data = F.normalize(torch.randn(n, d, generator=gen), dim=1).to(device)
    partner = torch.randint(n, (n,), generator=gen).to(device)
    out = {}
    for name, trainer in (
        ("batched", TEMITrainer(cfg, d, device)),
        ("python_loop", LoopTrainer(cfg, d, device)),
    ):

        def step(i: int) -> None:
            idx = torch.arange(i * b, (i + 1) * b, device=device) % n
            if name == "batched":
                trainer.step(data[idx], data[partner[idx]], 1e-4, False)
            else:
                trainer.step(data[idx], data[partner[idx]], 1e-4)

        step(0)  # warm-up: allocator, kernels, optimizer state
        _sync(device)
        steps = n // b
        start = time.perf_counter()
        for epoch in range(args.temi_epochs):
            for i in range(steps):
                step(i)
        _sync(device)
        seconds = time.perf_counter() - start
        out[name] = args.temi_epochs * steps * b / seconds
        print(
            f"  TEMI {name:>11}: {out[name]:9.1f} samples/s "
            f"({seconds / (args.temi_epochs * steps) * 1000:.0f} ms/step)",
            flush=True,
        )
    out["speedup"] = out["batched"] / out["python_loop"]
    print(f"  TEMI speed-up of batched heads: {out['speedup']:.2f}x", flush=True)
    return out


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak resident memory) of this process
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def knn_worker(impl: str, n: int, d: int, k: int, device: str) -> dict:
    """Run one kNN implementation on fresh data; report seconds and peak extra memory."""
    dev = pick_device(device)
    if impl == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        def run(x: np.ndarray, kk: int):
            model = NearestNeighbors(n_neighbors=kk + 1, algorithm="brute", metric="cosine")
            return model.fit(x).kneighbors(x)

    else:
        from clustermine.knn import cosine_knn

        def run(x: np.ndarray, kk: int):
            # The torch code (the default on a CPU is faiss: benchmarks/bench_backends.py).
            return cosine_knn(x, kk, device=dev, backend="torch")

    rng = np.random.default_rng(0)
    run(rng.normal(size=(64, d)).astype(np.float32), 5)  # imports and one-off set-up
    x = rng.normal(size=(n, d)).astype(np.float32)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline = _status_kb("VmRSS")
    exact = _peak_rss_reset()
    start = time.perf_counter()
    run(x, k)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    # Without a resettable peak, VmHWM may predate the run (an upper bound).
    out = {
        "seconds": seconds,
        "peak_extra_mb": (_status_kb("VmHWM") - baseline) / 1024,
        "exact_peak": exact,
    }
    if dev.type == "cuda" and impl == "clustermine":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_worker(impl: str, n: int, d: int, k: int, device: str) -> dict:
    cmd = [sys.executable, __file__, "--knn-worker", impl, str(n), str(d), str(k), device]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"kNN worker failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_knn(args: argparse.Namespace, device: str) -> dict:
    out = {}
    for impl in ("clustermine", "sklearn"):
        r = run_worker(impl, args.knn_n, args.dim, args.k, device)
        out[impl] = r
        gpu = f", GPU peak {r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else ""
        print(
            f"  kNN {impl:>11}: N={args.knn_n} D={args.dim} k={args.k}: {r['seconds']:.2f} s, "
            f"peak extra RSS {r['peak_extra_mb']:.0f} MB{gpu}",
            flush=True,
        )
    out["time_ratio"] = out["sklearn"]["seconds"] / out["clustermine"]["seconds"]
    out["memory_ratio"] = out["sklearn"]["peak_extra_mb"] / max(
        out["clustermine"]["peak_extra_mb"], 1e-9
    )
    print(
        f"  kNN clustermine vs scikit-learn: {out['time_ratio']:.2f}x faster, "
        f"{out['memory_ratio']:.2f}x less peak memory",
        flush=True,
    )
    return out


def bench_growth(args: argparse.Namespace, device: str) -> list[dict]:
    rows = []
    for n in args.growth_n:
        r = run_worker("clustermine", n, args.growth_dim, args.k, device)
        rows.append({"N": n, **r})
        print(
            f"  kNN growth: N={n:>7} D={args.growth_dim}: {r['seconds']:8.2f} s, "
            f"peak extra RSS {r['peak_extra_mb']:.0f} MB",
            flush=True,
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(
            f"  kNN growth: N x{b['N'] / a['N']:.0f} -> time x{b['seconds'] / a['seconds']:.1f} "
            f"(quadratic would be x{(b['N'] / a['N']) ** 2:.0f})",
            flush=True,
        )
    return rows


def bench_kmeans(args: argparse.Namespace, device: torch.device) -> dict:
    from clustermine.clustering.kmeans import fit_kmeans

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.kmeans_c, args.growth_dim)).astype(np.float32)
    x = centres[rng.integers(args.kmeans_c, size=args.kmeans_n)]
    x += rng.normal(scale=0.5, size=x.shape).astype(np.float32)
    out = {}
    for name, init_size in (("all rows", args.kmeans_n), ("sample", args.kmeans_init)):
        row = {}
        for iters in (1, 20):  # one iteration: about the seeding alone
            start = time.perf_counter()
            params = {"init": "kmeans++", "init_size": init_size, "max_iter": iters}
            result = fit_kmeans(x, args.kmeans_c, params, device=device)
            row[iters] = (time.perf_counter() - start, result.head_losses[0])
        out[name] = {"seeding_seconds": row[1][0], "seconds": row[20][0], "inertia": row[20][1]}
        print(f"  k-means++ from {name} ({init_size} rows): seeding + 1 iteration "
              f"{row[1][0]:6.2f} s, fit {row[20][0]:6.2f} s, inertia {row[20][1]:.6g}",
              flush=True)
    a, b = out["all rows"], out["sample"]
    print(f"  seeding from a sample, same run: seeding x{b['seeding_seconds'] / a['seeding_seconds']:.2f}"
          f", fit x{b['seconds'] / a['seconds']:.2f}, inertia x{b['inertia'] / a['inertia']:.4f}",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    p.add_argument("--device", default="auto")
    p.add_argument("--dim", type=int, default=512, help="embedding dimension (TEMI, kNN)")
    p.add_argument("--heads", type=int, default=50)
    p.add_argument("--temi-n", type=int, default=512, help="samples per TEMI epoch")
    p.add_argument("--temi-batch", type=int, default=256)
    p.add_argument("--temi-c", type=int, default=100, help="clusters of the TEMI heads")
    p.add_argument("--temi-epochs", type=int, default=1)
    p.add_argument("--knn-n", type=int, default=10000)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--growth-n", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--growth-dim", type=int, default=64)
    p.add_argument("--kmeans-n", type=int, default=50000)
    p.add_argument("--kmeans-c", type=int, default=500)
    p.add_argument("--kmeans-init", type=int, default=16000, help="rows k-means++ seeds from")
    p.add_argument("--skip", nargs="*", default=[], choices=["temi", "knn", "growth", "kmeans"])
    p.add_argument("--knn-worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.knn_worker:
        impl, n, d, k, device = args.knn_worker
        print(json.dumps(knn_worker(impl, int(n), int(d), int(k), device)))
        return
    if args.quick:
        args.temi_n, args.heads, args.knn_n = 256, 20, 5000
        args.growth_n = [5000, 20000]
        args.kmeans_n, args.kmeans_c, args.kmeans_init = 10000, 100, 3200
    device = pick_device(args.device)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        flush=True,
    )
    if "temi" not in args.skip:
        print(
            f"TEMI: H={args.heads} heads, D={args.dim}, C={args.temi_c}, batch {args.temi_batch} "
            f"pairs, {args.temi_n} samples x {args.temi_epochs} epoch(s)",
            flush=True,
        )
        bench_temi(args, device)
    if "knn" not in args.skip:
        print("kNN (exact, cosine, self excluded):", flush=True)
        bench_knn(args, str(device))
    if "growth" not in args.skip:
        print("kNN time growth:", flush=True)
        bench_growth(args, str(device))
    if "kmeans" not in args.skip:
        print(f"k-means: N={args.kmeans_n}, D={args.growth_dim}, C={args.kmeans_c}, "
              "20 Lloyd iterations at most:", flush=True)
        bench_kmeans(args, device)


if __name__ == "__main__":
    main()
