"""The long TEMI run: when TEMI starts to learn on CLIP-like embeddings, and how its clusters
compare with k-means'. Prints the numbers of docs/clustering.md ("How TEMI learns").

Data: ``clip_like_concepts`` of tests/helpers (N rows around 100 planted concepts with 4
sub-modes each, D = 384, a shared direction that gives rows of different concepts a cosine of
0.5, random norms). Every run uses the same data, kNN graph (k = 50) and seed. Runs:

- ``temi`` at the defaults (the official training: PyTorch's default init of the last layer,
  z-scored input) except for ``--heads``, ``--epochs`` and ``--warmup``;
- variants named ``<init>/<input>``: init ``official`` or ``normal`` (the N(0, 1) last layer
  this project drew before), input ``zscore``, ``raw`` (the official code's default) or ``l2``
  (L2-normalised rows, this project's former default);
- ``kmeans`` (spherical) at the same C.

For each: the first epoch whose best-head loss reaches twice the loss of uniform outputs (where
the health check stops calling a run "not learned"), the best-head loss in multiples of that
level every ``--report-every`` epochs, the final NMI, ARI, Hungarian, over-clustering and
per-class accuracy, the health warnings and the time.

    python benchmarks/bench_temi.py                                  # 10 heads, 100 epochs
    python benchmarks/bench_temi.py --runs official/l2 normal/l2     # a subset
    python benchmarks/bench_temi.py --quick                          # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import clip_like_concepts  # noqa: E402

from clustermine import cluster_analysis as ca  # noqa: E402
from clustermine.clustering.kmeans import fit_kmeans  # noqa: E402
from clustermine.clustering.temi import TEMIConfig, TEMITrainer, prepare_embeddings  # noqa: E402
from clustermine.knn import cosine_knn  # noqa: E402

RUNS = ("official/zscore", "official/raw", "official/l2", "normal/zscore", "normal/l2", "kmeans")


def run_temi(name: str, x: np.ndarray, graph: np.ndarray, args: argparse.Namespace) -> dict:
    init, inp = name.split("/")
    cfg = TEMIConfig(
        num_clusters=args.C,
        heads=args.heads,
        epochs=args.epochs,
        warmup_epochs=args.warmup,
        batch_size=args.batch_size,
        zscore=inp == "zscore",
        l2_normalize=inp == "l2",
        seed=args.seed,
    )
    trainer = TEMITrainer(cfg, x.shape[1], torch.device(args.device))
    if init == "normal":
        with torch.no_grad():
            gen = torch.Generator().manual_seed(args.seed)
            trainer.student.v.copy_(torch.randn(trainer.student.v.shape, generator=gen))
            trainer.teacher.v.copy_(trainer.student.v)
    data = torch.from_numpy(prepare_embeddings(x, cfg.zscore, cfg.l2_normalize))
    start = time.perf_counter()
    result = trainer.fit(data.to(args.device), torch.from_numpy(graph).to(args.device))
    seconds = time.perf_counter() - start
    ratio = result.loss_history.min(axis=1) / ca.uniform_temi_loss(cfg.num_clusters, cfg.beta)

    def first_epoch(level: float) -> int | None:
        hits = np.flatnonzero(ratio >= level)
        return int(hits[0]) + 1 if len(hits) else None

    return {
        "run": name,
        "assignments": result.assignments,
        # The health check's level, and twice the uniform loss (clearly learning).
        "learning_starts_epoch": first_epoch(ca.LEARNED_LOSS_RATIO),
        "reaches_2x_epoch": first_epoch(2.0),
        "loss_ratio_by_epoch": {
            int(e): round(float(ratio[e - 1]), 2)
            for e in range(args.report_every, args.epochs + 1, args.report_every)
        },
        "loss_ratio_every_epoch": [round(float(r), 3) for r in ratio],
        "best_head_loss": float(result.loss_history[-1].min()),
        "teacher_max_prob": result.health["teacher_max_prob"],
        "nonempty_clusters": result.health["nonempty_clusters"],
        "warnings": result.warnings,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    p.add_argument("--n", type=int, default=10000, help="samples")
    p.add_argument("--C", type=int, default=400, help="clusters")
    p.add_argument("--heads", type=int, default=10)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20, help="warm-up epochs")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-every", type=int, default=10, help="epochs between loss figures")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="3,000 samples, 3 heads, 10 epochs")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.heads, args.epochs, args.warmup, args.report_every = 3000, 3, 10, 2, 5
    x, y = clip_like_concepts(n=args.n, seed=args.seed)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {args.device}; data: N={args.n}, 100 "
        f"concepts, D={x.shape[1]}, C={args.C}; TEMI: {args.heads} heads, {args.epochs} epochs, "
        f"{args.warmup} warm-up, batch {args.batch_size}, seed {args.seed}",
        flush=True,
    )
    graph = cosine_knn(x, 50, device=args.device).indices
    rows = []
    for name in args.runs:
        if name == "kmeans":
            start = time.perf_counter()
            res = fit_kmeans(x, args.C, {"seed": args.seed}, device=args.device)
            row = {"run": name, "assignments": res.assignments, "warnings": res.warnings,
                   "iterations": res.health["iterations"],
                   "nonempty_clusters": res.health["nonempty_clusters"],
                   "seconds": time.perf_counter() - start}
        else:
            row = run_temi(name, x, graph, args)
        agreement = ca.ground_truth_agreement(row.pop("assignments"), y)
        row.update({k: round(v, 4) for k, v in agreement.items() if k != "num_classes"})
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n| run | loss reaches {ca.LEARNED_LOSS_RATIO:g}x / 2x uniform (epoch) | loss / uniform "
          "at the end | NMI | ARI | Hungarian acc | over-clustering acc | per-class acc | "
          "warnings | time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        end = r.get("loss_ratio_by_epoch", {}).get(args.epochs, "–")
        start = "–"
        if r["run"] != "kmeans":
            start = f"{r['learning_starts_epoch'] or 'never'} / {r['reaches_2x_epoch'] or 'never'}"
        print(f"| {r['run']} | {start} | {end} | {r['nmi']:.2f} | {r['ari']:.2f} | "
              f"{r['hungarian_accuracy']:.2f} | {r['overclustering_accuracy']:.2f} | "
              f"{r['per_class_accuracy']:.2f} | {', '.join(r['warnings']) or '–'} | "
              f"{r['seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
