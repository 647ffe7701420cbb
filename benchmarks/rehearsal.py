"""A full-size rehearsal of the workflow after encoding, on synthetic CLIP-like embeddings of
ImageNet's size (benchmarks/synthetic.py), through the real Snakefile.

Data, in the project's HDF5 formats (`type: embeddings` datasets and corpus): N × 1024 ID-train
embeddings of 1000 classes (ImageNet train: N = 1,281,167), a 50,000-image ID test set, six OOD
sets of 10,000 (three of unused concepts, three of the ID classes' sibling names) and a
79,403-name corpus (WordNet nouns + adjectives). The workflow runs zero-shot labels over the
corpus, PosMine, spherical k-means with C = 4000, ClusterMine, NegLabel (grouped Eq. 1), Eq. 1
scoring, metrics and tables, one GPU-tagged job at a time (``--resources gpu=1``) on the CPU.
Snakemake's ``benchmark:`` files give each job's wall time and peak resident memory; they are
collected into a table.

Outside the workflow (``--extras``), as the workflow's own jobs would run them: the exact kNN
graph (k = 50) timed on ``--knn-queries`` queries against all N rows and scaled to N queries,
and TEMI (50 heads, C = 4000) timed over ``--temi-steps`` steps and scaled to an epoch; both
with their peak memory at the full N. These are extrapolations and are printed as such.

    python benchmarks/rehearsal.py --n 100000 --workdir /scratch/rehearsal
    python benchmarks/rehearsal.py --n 1281167 --kmeans-iters 3 --extras --workdir ...
    python benchmarks/rehearsal.py --n 1281167 --kmeans-iters 2 --until cluster --workdir ...
    python benchmarks/rehearsal.py --n 1281167 --kmeans-iters 3 --forcerun cluster --workdir ...
    python benchmarks/rehearsal.py --n 5000 --dim 64 --classes 50 --names 2000 --test 1000 \
        --ood 300 --clusters 100 --extras --workdir /tmp/small      # a smoke run, a minute

PosMine's M scales with N (100 at ImageNet's size) so that every size keeps its meaning;
``--kmeans-iters`` caps Lloyd's iterations (the per-iteration time is reported, so a capped run
extrapolates to any count).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from synthetic import World, class_counts  # noqa: E402

IMAGENET_TRAIN = 1_281_167
OOD_SETS = ("far-1", "far-2", "far-3", "near-1", "near-2", "near-3")
MODEL = "synthetic"


def make_data(data: Path, args) -> dict[str, Path]:
    """The embedding files (reused when present with the same sizes); returns their paths."""
    data.mkdir(parents=True, exist_ok=True)
    world = World(num_names=args.names, dim=args.dim, num_classes=args.classes, seed=args.seed)
    files = {"corpus": data / f"corpus-{args.names}.h5",
             "imagenet-train": data / f"train-{args.n}.h5",
             "imagenet-val": data / f"val-{args.test}.h5"}  # fmt: skip
    files.update({f"ood-{s}": data / f"ood-{s}-{args.ood}.h5" for s in OOD_SETS})
    made = []
    start = time.perf_counter()
    if not files["corpus"].exists():
        world.write_corpus(files["corpus"])
        made.append("corpus")
    if not files["imagenet-train"].exists():
        counts = class_counts(args.classes, args.n, seed=args.seed)
        world.write_images(files["imagenet-train"], "imagenet-train", world.class_concepts,
                           counts, seed=1)  # fmt: skip
        made.append("imagenet-train")
    if not files["imagenet-val"].exists():
        counts = class_counts(args.classes, args.test, seed=args.seed + 1)
        world.write_images(files["imagenet-val"], "imagenet-val", world.class_concepts, counts,
                           seed=2)  # fmt: skip
        made.append("imagenet-val")
    for i, name in enumerate(OOD_SETS):
        path = files[f"ood-{name}"]
        if path.exists():
            continue
        pool = world.far_concepts if name.startswith("far") else world.near_concepts
        per_set = min(100, len(pool) // 3)  # concepts per OOD set
        concepts = pool[(i % 3) * per_set : (i % 3 + 1) * per_set]
        counts = np.full(len(concepts), args.ood // len(concepts))
        counts[: args.ood - counts.sum()] += 1
        world.write_images(path, f"ood-{name}", concepts, counts, seed=10 + i, labels=False)
        made.append(f"ood-{name}")
    if made:
        print(f"data: wrote {', '.join(made)} in {time.perf_counter() - start:.0f} s", flush=True)
    return files


def write_config(workdir: Path, files: dict[str, Path], args) -> Path:
    import yaml

    min_votes = max(1, round(100 * args.n / IMAGENET_TRAIN))
    datasets = {name: {"type": "embeddings", "paths": {MODEL: str(path)}}
                for name, path in files.items() if name != "corpus"}  # fmt: skip
    kmeans = {"method": "kmeans", "init": args.kmeans_init}
    if args.kmeans_iters:
        kmeans["max_iter"] = args.kmeans_iters
    config = {
        "seed": args.seed,
        "models": {MODEL: {"arch": "synthetic-clip", "pretrained": None}},
        "datasets": datasets,
        "corpora": {"synthetic": {"type": "embeddings", "paths": {MODEL: str(files["corpus"])}}},
        "prompts": ["simple"],
        "compute": {"device": "cpu", "memory_budget_mb": args.budget_mb},
        "clusterers": {"kmeans": kmeans},
        "label_sets": {
            "posmine": {"miner": "posmine", "min_votes": min_votes},
            "clustermine": {"miner": "clustermine", "clusterer": "kmeans", "C": args.clusters},
            "neglabel": {"miner": "neglabel", "num_negatives": 10000, "quantile": 0.95},
        },
        "methods": {
            "neglabel": {"score": "eq1_grouped", "labels": "neglabel", "tau": 0.01,
                         "groups": 100},  # fmt: skip
            "posmine": {"score": "eq1", "labels": "posmine", "tau_factor": 0.1},
            "clustermine": {"score": "eq1", "labels": "clustermine", "tau_factor": 0.1},
        },
        "idsets": {"imagenet": {
            "train": "imagenet-train", "test": ["imagenet-val"], "corpus": "synthetic",
            "prompts": "simple", "benchmarks": [f"ood-{s}" for s in OOD_SETS],
        }},  # fmt: skip
    }
    if args.ivf_nprobe:
        config["clusterers"]["temi-ivf"] = {"method": "temi", "knn": 50, "knn_index": "ivf",
                                            "knn_nprobe": args.ivf_nprobe}  # fmt: skip
        config["label_sets"]["clustermine-temi"] = {"miner": "clustermine",
                                                    "clusterer": "temi-ivf", "C": args.clusters}
        config["methods"]["clustermine-temi"] = {"score": "eq1", "labels": "clustermine-temi",
                                                 "tau_factor": 0.1}  # fmt: skip
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_workflow(workdir: Path, args) -> float:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "-d", str(workdir), "--configfile", str(workdir / "config.yaml"),
           "--cores", str(args.cores), "--resources", "gpu=1", "--rerun-incomplete",
           "--printshellcmds"]  # fmt: skip
    if args.until:
        cmd += ["--until", *args.until]
    if args.forcerun:
        cmd += ["--forcerun", *args.forcerun]
    print("workflow:", " ".join(cmd[1:]), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with open(workdir / "snakemake.log", "a") as log:
        res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    seconds = time.perf_counter() - start
    if res.returncode:
        sys.exit(f"the workflow failed (exit {res.returncode}); see {workdir / 'snakemake.log'}")
    return seconds


def collect(workdir: Path) -> list[dict]:
    """One row per job: Snakemake's benchmark file (wall seconds, peak RSS) and, for k-means,
    the seeding time and iterations from its log and cluster file."""
    rows = []
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        with open(tsv) as f:
            rec = next(csv.DictReader(f, delimiter="\t"))
        job = str(tsv.relative_to(workdir / "benchmarks"))[: -len(".tsv")]
        row = {"job": job, "seconds": float(rec["s"]), "max_rss_mb": float(rec["max_rss"]),
               "cpu_seconds": float(rec.get("cpu_time") or "nan")}  # fmt: skip
        if "/clusters/" in job and "sweeps" not in job:
            row.update(kmeans_details(workdir, job))
        if "/knn/" in job:
            row.update(knn_details(workdir, job))
        rows.append(row)
    return rows


def knn_details(workdir: Path, job: str) -> dict:
    """An approximate graph's measured recall and its IVF settings (from the kNN file)."""
    import h5py

    from clustermine.h5io import read_attrs

    with h5py.File(workdir / "results" / f"{job}.h5", "r") as f:
        attrs = read_attrs(f)
    keys = ("recall", "recall_queries", "nlist", "nprobe", "exact_fallback_rows")
    return {key: attrs[key] for key in keys if key in attrs}


def kmeans_details(workdir: Path, job: str) -> dict:
    from clustermine.clustering.io import read_cluster_attrs

    out = {}
    log = workdir / "logs" / f"{job}.log"
    if log.exists():
        m = re.search(r"seeding from \d+ of \d+ rows \(([\d.]+)s\)", log.read_text())
        if m:
            out["seeding_seconds"] = float(m.group(1))
    attrs = read_cluster_attrs(workdir / "results" / f"{job}.h5")
    iters = int(attrs.get("iterations") or json.loads(attrs.get("health") or "{}").get(
        "iterations", 0))  # fmt: skip
    out["iterations"] = iters
    out["train_seconds"] = float(attrs["train_seconds"])
    lloyd = out["train_seconds"] - out.get("seeding_seconds", 0.0)
    out["seconds_per_iteration"] = lloyd / max(1, iters)
    return out


# --- outside the workflow: kNN and TEMI, timed on a part and scaled --------------------------


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def knn_extra(images: str, queries: int, threads: int) -> dict:
    """As the knn job: read the file, search ``queries`` rows against all (faiss, exact)."""
    import torch

    from clustermine.h5io import read_image_embeddings
    from clustermine.knn import cosine_knn

    torch.set_num_threads(threads)
    emb = read_image_embeddings(images).embeddings
    n, q = len(emb), min(queries, len(emb))
    start = time.perf_counter()
    nn = cosine_knn(emb, 50, device="cpu", query_rows=(0, q), copy=False)
    seconds = time.perf_counter() - start
    return {"n": n, "queries": q, "seconds": seconds, "seconds_scaled_to_n": seconds * n / q,
            "backend": nn.attrs["backend"], "max_rss_mb": _peak_mb()}  # fmt: skip


def temi_extra(images: str, steps: int, threads: int, clusters: int) -> dict:
    """As the cluster job of TEMI: read, prepare, build 50 heads; time ``steps`` steps."""
    import torch

    from clustermine.clustering.temi import TEMIConfig, TEMITrainer, prepare_embeddings
    from clustermine.h5io import read_image_embeddings

    torch.set_num_threads(threads)
    emb = read_image_embeddings(images).embeddings
    cfg = TEMIConfig(num_clusters=clusters)
    data = torch.from_numpy(prepare_embeddings(emb, cfg.zscore, cfg.l2_normalize, copy=False))
    trainer = TEMITrainer(cfg, data.shape[1], torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    b = cfg.batch_size
    lr = cfg.peak_lr(b)

    def step():
        idx = torch.randint(len(data), (b,), generator=gen)
        partner = torch.randint(len(data), (b,), generator=gen)  # compute as with kNN pairs
        trainer.step(data[idx], data[partner], lr, False)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    rate = steps * b / seconds
    return {"n": len(emb), "heads": cfg.heads, "clusters": clusters, "steps": steps,
            "batch": b, "samples_per_s": rate, "epoch_seconds_scaled": len(emb) / rate,
            "max_rss_mb": _peak_mb()}  # fmt: skip


def extra(kind: str, *args) -> dict:
    cmd = [sys.executable, __file__, "--extra-worker", kind, json.dumps(list(args))]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"{kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    lines = ["| job | wall s | peak RSS MB | notes |", "|---|---:|---:|---|"]
    for r in rows:
        notes = ""
        if "iterations" in r:
            notes = (f"seeding {r.get('seeding_seconds', float('nan')):.0f} s, "
                     f"{r['iterations']} iterations, {r['seconds_per_iteration']:.1f} s each")
        if "recall" in r:
            notes = (f"IVF nlist {r['nlist']}, nprobe {r['nprobe']}: recall@50 "
                     f"{r['recall']:.4f} on {r['recall_queries']} queries")
        lines.append(f"| {r['job']} | {r['seconds']:.1f} | {r['max_rss_mb']:.0f} | {notes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="ID-train embeddings")
    p.add_argument("--workdir", type=Path, required=False, help="run folder (data in ../data)")
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--names", type=int, default=79_403)
    p.add_argument("--test", type=int, default=50_000)
    p.add_argument("--ood", type=int, default=10_000, help="images per OOD set")
    p.add_argument("--clusters", type=int, default=4000)
    p.add_argument("--kmeans-iters", type=int, default=0, help="cap of Lloyd (0: the default)")
    p.add_argument("--kmeans-init", default="kmeans||", choices=["kmeans||", "kmeans++", "random"])
    p.add_argument("--budget-mb", type=int, default=1024)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--until", nargs="+", metavar="RULE",
                   help="run the workflow only up to these rules (e.g. cluster)")
    p.add_argument("--forcerun", nargs="+", metavar="RULE",
                   help="rerun these rules and what depends on them (after a code change)")
    p.add_argument("--ivf-nprobe", type=int, default=0,
                   help="add TEMI on a faiss IVF kNN graph (k = 50, this nprobe) and its "
                        "ClusterMine; with --until knn only the graph is built")  # fmt: skip
    p.add_argument("--extras", action="store_true", help="also time kNN and TEMI (scaled)")
    p.add_argument("--no-workflow", action="store_true", help="only data and --extras")
    p.add_argument("--knn-queries", type=int, default=4000)
    p.add_argument("--temi-steps", type=int, default=10)
    p.add_argument("--extra-worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.extra_worker:
        kind, rest = args.extra_worker[0], json.loads(args.extra_worker[1])
        print(json.dumps({"knn": knn_extra, "temi": temi_extra}[kind](*rest)))
        return
    if args.workdir is None:
        p.error("--workdir is required")
    workdir = args.workdir / f"N{args.n}"
    workdir.mkdir(parents=True, exist_ok=True)
    files = make_data(args.workdir / "data", args)
    write_config(workdir, files, args)
    report = {"n": args.n, "args": {k: str(v) for k, v in vars(args).items()},
              "load_average_start": os.getloadavg()[0]}  # fmt: skip
    if not args.no_workflow:
        report["workflow_seconds"] = run_workflow(workdir, args)
        report["jobs"] = collect(workdir)
        print(markdown(report["jobs"]), flush=True)
        print(f"workflow wall time {report['workflow_seconds']:.0f} s", flush=True)
    if args.extras:
        train = str(files["imagenet-train"])
        knn = extra("knn", train, args.knn_queries, args.cores)
        print(f"kNN (exact, faiss, k=50): {knn['queries']} of {knn['n']} queries in "
              f"{knn['seconds']:.1f} s -> EXTRAPOLATED {knn['seconds_scaled_to_n']:.0f} s for all; "
              f"peak RSS {knn['max_rss_mb']:.0f} MB (measured)", flush=True)
        temi = extra("temi", train, args.temi_steps, args.cores, args.clusters)
        print(f"TEMI ({temi['heads']} heads, C={temi['clusters']}): {temi['samples_per_s']:.0f} "
              f"samples/s over {temi['steps']} steps -> EXTRAPOLATED "
              f"{temi['epoch_seconds_scaled']:.0f} s per epoch of {temi['n']}; peak RSS "
              f"{temi['max_rss_mb']:.0f} MB (measured)", flush=True)
        report["extras"] = {"knn": knn, "temi": temi}
    report["load_average_end"] = os.getloadavg()[0]
    out = workdir / "rehearsal.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures: {out}", flush=True)


if __name__ == "__main__":
    main()
