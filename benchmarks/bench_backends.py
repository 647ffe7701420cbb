"""kNN and k-means backends side by side: the project's torch code, the project on faiss
(``backend: faiss``), faiss's own k-means and scikit-learn, on the same data in one run.

Data: synthetic CLIP-like image embeddings (benchmarks/synthetic.py: clustered, with a shared
modality-gap direction, so the kNN has few ties and k-means real work). Every measurement runs
in a fresh process (peak resident memory is its own) with the same number of threads.

    python benchmarks/bench_backends.py knn --n 10000 100000 400000 --dim 512 1024
    python benchmarks/bench_backends.py kmeans --n 10000 100000 400000 --dim 512 1024 --c 1000 4000
    python benchmarks/bench_backends.py init      # the seedings, judged by ClusterMine's labels
    python benchmarks/bench_backends.py approx    # IVF index: time and recall against exact
    python benchmarks/bench_backends.py approx-temi   # TEMI on exact vs IVF neighbours: NMI/ARI
    python benchmarks/bench_backends.py approx-cost   # where an IVF graph's time goes, and at 5M
    python benchmarks/bench_backends.py ivf-lists --approx-n 1000000  # the filled index's memory
    python benchmarks/bench_backends.py seeding   # k-means++, k-means‖, random and faiss's own
    python benchmarks/bench_backends.py storage   # float16 storage: what changes in the results
    python benchmarks/bench_backends.py --quick all

kNN: exact cosine top-k (self excluded) of ``--queries`` query rows against all N rows; the
time for all N queries is that time × N / queries (the work is the same for every query), said
so in the output. Agreement = neighbour recall against the torch code on the same queries.
k-means: spherical, the same random initial centres for all, ``--iters`` iterations, no early
stop; quality = mean cosine distance of every row to its nearest final centre.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import World, class_counts, unit  # noqa: E402


def data(n: int, dim: int, seed: int = 0, classes: int = 1000) -> np.ndarray:
    """n CLIP-like image embeddings of ``classes`` concepts (a small corpus: only images)."""
    world = World(num_names=4 * classes, dim=dim, num_classes=classes, seed=seed)
    counts = np.full(classes, n // classes)
    counts[: n - counts.sum()] += 1
    return world.all_images(world.class_concepts, counts, seed=1)[0]


# --- measurements, each in its own process ----------------------------------------------------


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, the peak resident memory of this process
    return _status_kb("VmRSS")


def knn_worker(impl: str, n: int, dim: int, k: int, queries: int, out: str) -> dict:
    x = data(n, dim)
    q = min(queries, n)
    if impl == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        def run():
            model = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="cosine")
            dist, idx = model.fit(x).kneighbors(x[:q])
            drop = idx == np.arange(q)[:, None]
            drop[~drop.any(axis=1), -1] = True
            return idx[~drop].reshape(q, k)

    else:
        from clustermine.knn import cosine_knn

        def run():
            return cosine_knn(x, k, device="cpu", backend=impl, query_rows=(0, q)).indices

    base = _reset_peak()
    start = time.perf_counter()
    idx = run()
    seconds = time.perf_counter() - start
    np.save(out, idx)
    return {"seconds": seconds, "seconds_all_n": seconds * n / q, "queries": q,
            "peak_extra_mb": (_status_kb("VmHWM") - base) / 1024}  # fmt: skip


def kmeans_worker(impl: str, n: int, dim: int, c: int, iters: int, seed: int) -> dict:
    import faiss
    import torch

    x = data(n, dim)
    xn = unit(x).astype(np.float32)
    # The same initial centres for everyone: what fit_kmeans(init="random", seed) draws.
    init = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:c].numpy()
    base = _reset_peak()
    start = time.perf_counter()
    if impl in ("torch", "faiss"):
        from clustermine.clustering.kmeans import fit_kmeans

        params = {"init": "random", "max_iter": iters, "tol": 0, "seed": seed, "backend": impl}
        result = fit_kmeans(x, c, params, device="cpu")
        seconds = time.perf_counter() - start
        mean_dist = result.head_losses[0] / n
    else:
        if impl == "faiss-kmeans":  # faiss's own spherical k-means on every row
            km = faiss.Kmeans(dim, c, niter=iters, spherical=True, seed=seed,
                              max_points_per_centroid=n, min_points_per_centroid=1)  # fmt: skip
            km.train(xn, init_centroids=xn[init])
            centres = km.centroids
        else:  # scikit-learn: euclidean Lloyd on the unit rows, centres normalised after
            from sklearn.cluster import KMeans

            km = KMeans(c, init=xn[init], n_init=1, max_iter=iters, tol=0, algorithm="lloyd")
            centres = unit(km.fit(xn).cluster_centers_).astype(np.float32)
        seconds = time.perf_counter() - start
        sims, _ = faiss.knn(xn, np.ascontiguousarray(centres), 1, faiss.METRIC_INNER_PRODUCT)
        mean_dist = float(np.mean(1.0 - sims[:, 0].astype(np.float64)))
    return {"seconds": seconds, "seconds_per_iter": seconds / iters, "mean_cos_dist": mean_dist,
            "peak_extra_mb": (_status_kb("VmHWM") - base) / 1024}  # fmt: skip


def ivf_lists_worker(how: str, n: int, dim: int) -> dict:
    """An IVF index (nlist 4·√N, cells trained on 2 iterations) filled a block at a time as
    faiss's ``add`` does (``grown``) or as ``approximate_knn`` does (``presized``): the memory
    the filled index holds, against the rows' own size."""
    import faiss

    from clustermine import knn_ivf

    x = np.ascontiguousarray(unit(data(n, dim)), dtype=np.float32)
    nlist = knn_ivf.default_nlist(n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.seed = 2, 0
    index.train(x[: 256 * nlist])
    next(knn_ivf._unit_blocks(x[:10]))  # torch's first use, before the count
    base = _reset_peak()
    start = time.perf_counter()
    if how == "presized":
        knn_ivf._add_presized(faiss, index, x, start)
    else:
        for _, block in knn_ivf._unit_blocks(x):
            index.add(block)
    seconds = time.perf_counter() - start
    held = (_status_kb("VmRSS") - base) / 1024
    return {"seconds": seconds, "index_mb": held, "rows_mb": x.nbytes / 2**20, "nlist": nlist,
            "peak_extra_mb": (_status_kb("VmHWM") - base) / 1024}  # fmt: skip


def worker(kind: str, args: list, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, json.dumps(args), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode:
        raise RuntimeError(f"{kind} worker {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- the benchmarks ---------------------------------------------------------------------------


def bench_knn(args, record) -> None:
    from clustermine.knn_ivf import neighbour_recall

    print(f"exact cosine kNN, k={args.k}, clustered CLIP-like rows; {args.queries} queries "
          "against all N rows, time for all N queries = measured x N / queries", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            for dim in args.dim:
                rows = {}
                for impl in args.knn_impls:
                    if impl == "sklearn" and n > args.sklearn_max_n:
                        continue
                    out = os.path.join(tmp, f"{impl}.npy")
                    r = worker("knn", [impl, n, dim, args.k, args.queries, out], args.threads)
                    r["indices"] = np.load(out)
                    rows[impl] = r
                ref = rows["torch"]["indices"]
                for impl, r in rows.items():
                    r["recall_vs_torch"] = neighbour_recall(r.pop("indices"), ref)
                    ratio = rows["torch"]["seconds"] / r["seconds"]
                    print(f"  N={n:>8,} D={dim:>5} {impl:>8}: {r['seconds']:8.2f} s for "
                          f"{r['queries']:,} queries, {r['seconds_all_n']:9.1f} s for all N, "
                          f"peak +{r['peak_extra_mb']:6.0f} MB, recall vs torch "
                          f"{r['recall_vs_torch']:.4f}, {ratio:5.2f}x torch's speed", flush=True)
                    record({"bench": "knn", "n": n, "dim": dim, "k": args.k, "impl": impl,
                            **r, "speed_vs_torch": ratio})  # fmt: skip


def bench_kmeans(args, record) -> None:
    print(f"spherical k-means, {args.iters} iterations from the same random centres "
          f"(seed {args.seed}), no early stop", flush=True)
    for n in args.n:
        for dim in args.dim:
            for c in args.c:
                if c * 10 > n:  # fewer than 10 rows per centre: not a k-means problem
                    continue
                rows = {}
                for impl in args.kmeans_impls:
                    if impl == "sklearn" and n > args.sklearn_max_n:
                        continue
                    rows[impl] = worker("kmeans", [impl, n, dim, c, args.iters, args.seed],
                                        args.threads)  # fmt: skip
                for impl, r in rows.items():
                    ratio = rows["torch"]["seconds"] / r["seconds"]
                    print(f"  N={n:>8,} D={dim:>5} C={c:>5} {impl:>13}: {r['seconds']:8.2f} s "
                          f"({r['seconds_per_iter']:6.2f} s/iteration), mean cosine distance "
                          f"{r['mean_cos_dist']:.5f}, peak +{r['peak_extra_mb']:6.0f} MB, "
                          f"{ratio:5.2f}x torch's speed", flush=True)
                    record({"bench": "kmeans", "n": n, "dim": dim, "c": c, "iters": args.iters,
                            "impl": impl, **r, "speed_vs_torch": ratio})  # fmt: skip


def bench_init(args, record) -> None:
    """k-means++, k-means‖ and random seeding, judged by what ClusterMine makes of the clusters:
    its positives against the planted ID classes (F1) and its Eq. 1 AUROC."""
    import torch

    from clustermine.clustering.kmeans import fit_kmeans
    from clustermine.detectors import get_detector
    from clustermine.h5io import TextEmbeddings
    from clustermine.label_quality import set_overlap
    from clustermine.metrics import auroc
    from clustermine.mining import MiningInputs, mine_labels
    from clustermine.zeroshot import zero_shot_top1

    torch.set_num_threads(args.threads)
    classes, n, c = args.init_classes, args.init_n, args.init_c
    world = World(num_names=args.init_names, dim=args.init_dim, num_classes=classes, seed=0)
    train, y = world.all_images(world.class_concepts, class_counts(classes, n), seed=1)
    test, _ = world.all_images(world.class_concepts, np.full(classes, 20), seed=2)
    far_c, near_c = world.far_concepts[:200], world.near_concepts[:200]
    far, _ = world.all_images(far_c, np.full(len(far_c), 25), seed=3)
    near, _ = world.all_images(near_c, np.full(len(near_c), 25), seed=4)
    top1 = zero_shot_top1(train, world.texts, device="cpu")
    print(f"seeding: N={n:,} D={args.init_dim} C={c} over {classes} planted classes, corpus "
          f"{len(world.names):,} names; zero-shot top-1 accuracy "
          f"{np.mean(top1 == world.class_concepts[y]):.3f}", flush=True)
    for init in args.init_methods:
        for seed in range(args.init_seeds):
            start = time.perf_counter()
            result = fit_kmeans(train, c, {"init": init, "seed": seed}, device="cpu")
            seconds = time.perf_counter() - start
            inputs = MiningInputs(world.names, world.texts, image_emb=train, top1=top1,
                                  assignments=result.assignments, device="cpu")  # fmt: skip
            labels = mine_labels("clustermine", inputs)
            overlap, f1 = set_overlap(labels.pos_names, world.class_names)
            det = get_detector("eq1").fit(
                None,
                TextEmbeddings(world.texts[labels.positives], labels.pos_names),
                TextEmbeddings(world.texts[labels.negatives], labels.neg_names),
                100.0, {"tau_factor": 0.1}, device="cpu",
            )  # fmt: skip
            s_id = det.score(test)
            row = {"bench": "init", "init": init, "seed": seed, "n": n, "c": c,
                   "seconds": seconds, "iterations": int(result.attrs["iterations"]),
                   "inertia": float(result.head_losses[0]), "n_pos": int(labels.n_pos),
                   "overlap": overlap, "f1": f1,
                   "auroc_far": auroc(s_id, det.score(far)),
                   "auroc_near": auroc(s_id, det.score(near)),
                   "empty_clusters": int((result.sizes == 0).sum())}  # fmt: skip
            record(row)
            print(f"  {init:>8} seed {seed}: {seconds:7.1f} s, {row['iterations']:3d} iterations, "
                  f"inertia {row['inertia']:.1f}, |Y_pos| {row['n_pos']}, overlap "
                  f"{overlap:.3f}, F1 {f1:.3f}, AUROC far {row['auroc_far']:.4f} near "
                  f"{row['auroc_near']:.4f}", flush=True)


def bench_approx(args, record) -> None:
    from clustermine.knn import approximate_knn, cosine_knn
    from clustermine.knn_ivf import neighbour_recall

    import torch

    torch.set_num_threads(args.threads)
    n, dim, k = args.approx_n, args.approx_dim, args.k
    x = data(n, dim)
    start = time.perf_counter()
    exact = cosine_knn(x, k, device="cpu", backend="faiss")
    t_exact = time.perf_counter() - start
    print(f"approximate kNN (faiss IVF), N={n:,} D={dim} k={k}; exact (faiss) {t_exact:.1f} s",
          flush=True)
    record({"bench": "approx", "n": n, "dim": dim, "index": "exact", "seconds": t_exact,
            "recall": 1.0})  # fmt: skip
    for nprobe in args.nprobe:
        start = time.perf_counter()
        approx = approximate_knn(x, k, nprobe=nprobe)
        seconds = time.perf_counter() - start
        recall = neighbour_recall(approx.indices, exact.indices)
        record({"bench": "approx", "n": n, "dim": dim, "index": "ivf", "nlist":
                approx.attrs["nlist"], "nprobe": nprobe, "seconds": seconds, "recall": recall,
                "recall_sampled": approx.attrs["recall"]})  # fmt: skip
        print(f"  nlist {approx.attrs['nlist']}, nprobe {nprobe:>3}: {seconds:7.1f} s "
              f"({t_exact / seconds:.1f}x faster), recall@{k} {recall:.4f} (estimate from "
              f"{approx.attrs['recall_queries']} queries: {approx.attrs['recall']:.4f})",
              flush=True)


def bench_approx_cost(args, record) -> None:
    """Where the time of an IVF graph goes, at the index of ``approximate_knn`` (nlist 4·√N,
    nprobe 16): training the cells (faiss's k-means, 10 iterations on up to 256 rows a cell),
    adding the rows (each to its nearest cell) and searching every row (each query scans the
    rows of its probed cells; timed on 500 queries and scaled to N). Each stage's rate of
    multiply-adds extrapolates it to ``--approx-cost-at`` rows."""
    import faiss

    faiss.omp_set_num_threads(args.threads)
    n, dim, k, nprobe = args.approx_n, args.approx_dim, args.k, 16
    x = np.ascontiguousarray(unit(data(n, dim)), dtype=np.float32)
    nlist = int(max(1, min(n // 39, round(4 * np.sqrt(n)))))
    queries = np.sort(np.random.default_rng(0).choice(n, min(500, n), replace=False))
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    truth = exact.search(x[queries], k + 1)[1][:, 1:]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0
    t0 = time.perf_counter()
    index.train(x)
    t1 = time.perf_counter()
    index.add(x)
    t2 = time.perf_counter()
    index.nprobe = nprobe
    found = index.search(x[queries], k + 1)[1][:, 1:]
    t3 = time.perf_counter()
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))
    seconds = {"train": t1 - t0, "add": t2 - t1, "search": (t3 - t2) * n / len(queries)}
    big = args.approx_cost_at
    big_nlist = int(round(4 * np.sqrt(big)))

    def work(rows, cells):  # multiply-adds of each stage
        return {"train": 10 * min(rows, 256 * cells) * cells * dim, "add": rows * cells * dim,
                "search": rows * nprobe * (rows / cells) * dim}

    here, there = work(n, nlist), work(big, big_nlist)
    at_big = {s: seconds[s] * there[s] / here[s] for s in seconds}
    record({"bench": "approx-cost", "n": n, "dim": dim, "nlist": nlist, "nprobe": nprobe,
            "recall": recall, **{f"{s}_seconds": round(v, 2) for s, v in seconds.items()},
            **{f"{s}_rate": round(here[s] / seconds[s]) for s in seconds},
            **{f"{s}_seconds_at_{big}": round(v) for s, v in at_big.items()}})
    print(f"IVF cost, N={n:,} D={dim} nlist={nlist} nprobe={nprobe}, {args.threads} threads "
          f"(extrapolated to N={big:,}, nlist {big_nlist}):", flush=True)
    for stage, label in (("train", "training the cells"), ("add", "adding the rows"),
                         ("search", "searching every row (scaled)")):
        print(f"  {label:<30} {seconds[stage]:8.1f} s ({here[stage] / seconds[stage]:.1e} "
              f"multiply-adds/s)   at N={big:,}: {at_big[stage] / 60:6.0f} min", flush=True)
    print(f"  recall@{k} on {len(queries)} queries: {recall:.4f}", flush=True)


def bench_ivf_lists(args, record) -> None:
    """The memory of a filled IVF index: faiss's lists grown block by block against lists
    allocated once at their size (``approximate_knn``), each in a fresh process."""
    n, dim = args.approx_n, args.approx_dim
    print(f"IVF index memory, N={n:,} D={dim}, rows added {16384:,} at a time:", flush=True)
    rows = {}
    for how in ("grown", "presized"):
        rows[how] = r = worker("ivf-lists", [how, n, dim], args.threads)
        record({"bench": "ivf-lists", "how": how, "n": n, "dim": dim, **r})
        print(f"  {how:<9} index {r['index_mb']:8.0f} MB = {r['index_mb'] / r['rows_mb']:.2f}× "
              f"the rows ({r['rows_mb']:.0f} MB), peak {r['peak_extra_mb']:8.0f} MB, "
              f"{r['seconds']:.1f} s", flush=True)
    sized, grown = rows["presized"], rows["grown"]
    print(f"  presized / grown: memory {sized['index_mb'] / grown['index_mb']:.2f}, "
          f"time {sized['seconds'] / grown['seconds']:.2f}", flush=True)


def bench_approx_temi(args, record) -> None:
    """TEMI at its defaults (but ``--temi-heads`` heads) on the exact kNN graph and on IVF
    graphs of decreasing ``nprobe``: how the neighbours' recall shows in the clusters
    (NMI/ARI against the planted concepts; docs/clustering.md, "Approximate kNN")."""
    import torch
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import clip_like_concepts

    from clustermine.clustering.temi import fit_temi
    from clustermine.knn import search_knn
    from clustermine.knn_ivf import neighbour_recall
    from clustermine.knn_search import KnnSearch

    torch.set_num_threads(args.threads)
    n, concepts, c = args.temi_n, args.temi_concepts, args.temi_c
    x, y = clip_like_concepts(n=n, concepts=concepts, d=args.temi_dim)
    exact = search_knn(x, KnnSearch(args.temi_k))
    print(f"TEMI on exact vs IVF neighbours: N={n:,} D={args.temi_dim} {concepts} concepts, "
          f"C={c}, k={args.temi_k}, {args.temi_heads} heads, default training", flush=True)
    for nprobe in [None, *args.temi_nprobe]:
        search = KnnSearch(args.temi_k) if nprobe is None else KnnSearch(
            args.temi_k, "ivf", None, nprobe)
        start = time.perf_counter()
        nn = exact if nprobe is None else search_knn(x, search)
        knn_seconds = time.perf_counter() - start
        recall = neighbour_recall(nn.indices, exact.indices)
        start = time.perf_counter()
        result = fit_temi(x, c, {"heads": args.temi_heads}, neighbors=nn, device="cpu")
        seconds = time.perf_counter() - start
        nmi = normalized_mutual_info_score(y, result.assignments)
        ari = adjusted_rand_score(y, result.assignments)
        row = {"bench": "approx-temi", "n": n, "graph": search.name, "recall": recall,
               "nlist": nn.attrs.get("nlist"), "knn_seconds": knn_seconds,
               "temi_seconds": seconds, "nmi": nmi, "ari": ari,
               "loss_ratio": result.health["loss_ratio"]}  # fmt: skip
        record(row)
        print(f"  {search.name:>28}: recall@{args.temi_k} {recall:.4f}, NMI {nmi:.3f}, ARI "
              f"{ari:.3f}, loss {row['loss_ratio']:.2f}x uniform (TEMI {seconds:.0f} s)",
              flush=True)


def bench_seeding(args, record) -> None:
    """The seedings of ``fit_kmeans`` side by side with faiss's own k-means, at each
    (N, D, C) of ``--seeding-sizes``: the seeding alone, then the whole k-means (seeding +
    at most ``--seeding-iters`` iterations, tol 1e-4, the faiss backend), its iterations and
    the mean cosine distance of every row to its centre (lower is better)."""
    import faiss
    import torch

    from clustermine.clustering import kmeans as K
    from clustermine.clustering import seeding as S

    torch.set_num_threads(args.threads)
    print(f"seeding: spherical k-means, at most {args.seeding_iters} iterations; faiss's own: "
          "faiss.Kmeans (random seeding, its defaults)", flush=True)
    for size in args.seeding_sizes:
        n, dim, c = (int(v) for v in size.split("x"))
        x = data(n, dim)
        xn = unit(x).astype(np.float32)
        for init in ("kmeans++", "kmeans||") if args.seeding_no_fit else (
                "kmeans++", "kmeans||", "random"):
            cfg = K.KMeansConfig(c, init=init, seed=args.seed)
            gen = torch.Generator().manual_seed(args.seed)
            seconds_seed = 0.0
            if init != "random":
                rows = K.init_rows(n, cfg, gen)
                sample = torch.from_numpy(xn) if rows is None else torch.from_numpy(xn)[rows]
                dist = S.Distances(sample, "cosine", K.default_budget(torch.device("cpu")))
                seed_with = S.kmeans_parallel if init == "kmeans||" else S.kmeans_plus_plus
                start = time.perf_counter()
                seed_with(dist, c, gen, None)
                seconds_seed = time.perf_counter() - start
            if args.seeding_no_fit:
                record({"bench": "seeding", "n": n, "dim": dim, "c": c, "init": init,
                        "seed_seconds": seconds_seed})  # fmt: skip
                print(f"  N={n:>8,} D={dim:>5} C={c:>5} {init:>12}: seeding "
                      f"{seconds_seed:7.2f} s", flush=True)
                continue
            start = time.perf_counter()
            result = K.fit_kmeans(x, c, {"init": init, "seed": args.seed,
                                         "max_iter": args.seeding_iters}, device="cpu")
            seconds = time.perf_counter() - start
            row = {"bench": "seeding", "n": n, "dim": dim, "c": c, "init": init,
                   "seed_seconds": seconds_seed, "seconds": seconds,
                   "iterations": int(result.attrs["iterations"]),
                   "mean_cos_dist": float(result.head_losses[0] / n)}  # fmt: skip
            record(row)
            print(f"  N={n:>8,} D={dim:>5} C={c:>5} {init:>12}: seeding {seconds_seed:7.2f} s, "
                  f"k-means {seconds:7.2f} s ({row['iterations']} iterations), mean cosine "
                  f"distance {row['mean_cos_dist']:.5f}", flush=True)
        if args.seeding_no_fit:
            continue
        start = time.perf_counter()
        km = faiss.Kmeans(dim, c, niter=args.seeding_iters, spherical=True, seed=args.seed)
        km.train(xn)
        sims, _ = faiss.knn(xn, km.centroids, 1, faiss.METRIC_INNER_PRODUCT)
        seconds = time.perf_counter() - start
        row = {"bench": "seeding", "n": n, "dim": dim, "c": c, "init": "faiss-own",
               "seconds": seconds, "iterations": len(km.obj),
               "mean_cos_dist": float(np.mean(1.0 - sims[:, 0].astype(np.float64)))}  # fmt: skip
        record(row)
        print(f"  N={n:>8,} D={dim:>5} C={c:>5} {'faiss own':>12}: k-means {seconds:7.2f} s "
              f"({row['iterations']} iterations), mean cosine distance "
              f"{row['mean_cos_dist']:.5f}", flush=True)


def bench_storage(args, record) -> None:
    """float16 against float32 storage of the image embeddings (``models.<m>.storage``): the
    same world as ``init`` (N = --init-n ID-train images of --init-classes planted classes,
    C = --init-c, a --init-names corpus), every image embedding rounded to float16 as the
    file stores it, then zero-shot labels, k-means, ClusterMine's labels and Eq. 1 / MCM
    AUROC computed from each."""
    import torch

    from clustermine.clustering.kmeans import fit_kmeans
    from clustermine.detectors import get_detector
    from clustermine.h5io import TextEmbeddings
    from clustermine.label_quality import set_overlap
    from clustermine.metrics import auroc
    from clustermine.mining import MiningInputs, mine_labels
    from clustermine.zeroshot import zero_shot_top1

    torch.set_num_threads(args.threads)
    classes, n, c = args.init_classes, args.init_n, args.init_c
    world = World(num_names=args.init_names, dim=args.init_dim, num_classes=classes, seed=0)
    sets = {
        "train": world.all_images(world.class_concepts, class_counts(classes, n), seed=1)[0],
        "test": world.all_images(world.class_concepts, np.full(classes, 20), seed=2)[0],
        "far": world.all_images(world.far_concepts[:200], np.full(200, 25), seed=3)[0],
        "near": world.all_images(world.near_concepts[:200], np.full(200, 25), seed=4)[0],
    }
    print(f"storage: N={n:,} D={args.init_dim} C={c}, {classes} planted classes, corpus "
          f"{len(world.names):,} names; float32 against float16-rounded image embeddings",
          flush=True)
    gt = TextEmbeddings(world.texts[world.class_concepts], list(world.class_names))
    out = {}
    for storage in ("float32", "float16"):
        x = {k: v.astype(storage).astype(np.float32) for k, v in sets.items()}
        top1 = zero_shot_top1(x["train"], world.texts, device="cpu")
        result = fit_kmeans(x["train"], c, {"seed": 0}, device="cpu")
        inputs = MiningInputs(world.names, world.texts, image_emb=x["train"], top1=top1,
                              assignments=result.assignments, device="cpu")  # fmt: skip
        labels = mine_labels("clustermine", inputs)
        eq1 = get_detector("eq1").fit(
            None, TextEmbeddings(world.texts[labels.positives], labels.pos_names),
            TextEmbeddings(world.texts[labels.negatives], labels.neg_names), 100.0,
            {"tau_factor": 0.1}, device="cpu")  # fmt: skip
        mcm = get_detector("mcm").fit(None, gt, None, 100.0, {}, device="cpu")
        row = {"bench": "storage", "storage": storage, "top1": top1,
               "assignments": result.assignments, "pos": set(labels.pos_names),
               "inertia": float(result.head_losses[0])}  # fmt: skip
        for name, det in (("eq1", eq1), ("mcm", mcm)):
            s_id = det.score(x["test"])
            for bench in ("far", "near"):
                row[f"auroc_{name}_{bench}"] = auroc(s_id, det.score(x[bench]))
        out[storage] = row
    a, b = out["float32"], out["float16"]
    same_top1 = float(np.mean(a["top1"] == b["top1"]))
    from sklearn.metrics import adjusted_rand_score

    # Cluster ids are arbitrary: the agreement of the two clusterings is their ARI.
    same_clusters = float(adjusted_rand_score(a["assignments"], b["assignments"]))
    overlap, _ = set_overlap(sorted(b["pos"]), sorted(a["pos"]))
    summary = {"bench": "storage", "n": n, "c": c, "same_top1": same_top1,
               "clusters_ari": same_clusters, "pos_float32": len(a["pos"]),
               "pos_float16": len(b["pos"]), "pos_shared": len(a["pos"] & b["pos"]),
               "inertia": [a["inertia"], b["inertia"]],
               **{k: [a[k], b[k]] for k in a if k.startswith("auroc")}}  # fmt: skip
    record(summary)
    print(f"  zero-shot top-1 equal for {same_top1:.4%} of the images; k-means clusterings "
          f"agree to ARI {same_clusters:.4f} (inertia {a['inertia']:.2f} / {b['inertia']:.2f}); "
          f"ClusterMine |Y_pos| {len(a['pos'])} / {len(b['pos'])}, {len(a['pos'] & b['pos'])} "
          f"shared (overlap {overlap:.3f})", flush=True)
    for key in (k for k in a if k.startswith("auroc")):
        print(f"  {key}: float32 {a[key]:.5f}, float16 {b[key]:.5f} "
              f"(difference {b[key] - a[key]:+.5f})", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="*",
                   help="all (default), knn, kmeans, init, approx, approx-temi, approx-cost, "
                   "ivf-lists, seeding, storage")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dim", type=int, nargs="+", default=[512])
    p.add_argument("--c", type=int, nargs="+", default=[1000])
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--queries", type=int, default=10_000, help="kNN query rows timed")
    p.add_argument("--iters", type=int, default=10, help="k-means iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sklearn-max-n", type=int, default=100_000)
    p.add_argument("--knn-impls", nargs="+", default=["torch", "faiss", "sklearn"])
    p.add_argument("--kmeans-impls", nargs="+",
                   default=["torch", "faiss", "faiss-kmeans", "sklearn"])  # fmt: skip
    p.add_argument("--init-n", type=int, default=50_000)
    p.add_argument("--init-c", type=int, default=1000)
    p.add_argument("--init-classes", type=int, default=250)
    p.add_argument("--init-names", type=int, default=20_000)
    p.add_argument("--init-dim", type=int, default=512)
    p.add_argument("--init-seeds", type=int, default=3)
    p.add_argument("--init-methods", nargs="+", default=["kmeans++", "kmeans||", "random"])
    p.add_argument("--approx-n", type=int, default=100_000)
    p.add_argument("--approx-dim", type=int, default=512)
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--approx-cost-at", type=int, default=5_000_000,
                   help="rows to extrapolate the IVF cost to (approx-cost)")
    p.add_argument("--temi-n", type=int, default=10_000)
    p.add_argument("--temi-concepts", type=int, default=50)
    p.add_argument("--temi-dim", type=int, default=128)
    p.add_argument("--temi-c", type=int, default=100)
    p.add_argument("--temi-k", type=int, default=50)
    p.add_argument("--temi-heads", type=int, default=2)
    p.add_argument("--temi-nprobe", type=int, nargs="+", default=[16, 4, 1])
    p.add_argument("--seeding-sizes", nargs="+", default=["10000x512x400", "100000x512x1000"],
                   help="N x D x C")
    p.add_argument("--seeding-iters", type=int, default=20)
    p.add_argument("--seeding-no-fit", action="store_true",
                   help="time the seedings alone (large sizes)")
    p.add_argument("--out", help="append every result as a JSON line to this file")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        kind, worker_args = args.worker[0], json.loads(args.worker[1])
        fn = {"knn": knn_worker, "kmeans": kmeans_worker, "ivf-lists": ivf_lists_worker}[kind]
        print(json.dumps(fn(*worker_args)))
        return
    if args.quick:
        args.n, args.dim, args.c, args.queries, args.iters = [4000], [64], [100], 2000, 3
        args.init_n, args.init_c, args.init_classes, args.init_names = 4000, 80, 20, 2000
        args.init_dim, args.init_seeds, args.approx_n, args.approx_dim = 64, 1, 4000, 64
        args.nprobe = [4]
        args.temi_n, args.temi_concepts, args.temi_c, args.temi_nprobe = 1000, 10, 20, [1]
        args.seeding_sizes = ["3000x64x50"]
    import faiss
    import sklearn
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; {args.threads} threads; torch {torch.__version__}, faiss "
          f"{faiss.__version__}, scikit-learn {sklearn.__version__}", flush=True)

    def record(row: dict) -> None:
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({**row, "threads": args.threads}) + "\n")

    known = {"knn", "kmeans", "init", "approx", "approx-temi", "approx-cost", "ivf-lists",
             "seeding", "storage"}
    what = known if not args.what or "all" in args.what else set(args.what)
    if what - known:
        p.error(f"unknown benchmark(s) {sorted(what - known)}; choose from all, {sorted(known)}")
    for name, fn in (("knn", bench_knn), ("kmeans", bench_kmeans), ("init", bench_init),
                     ("approx", bench_approx), ("approx-temi", bench_approx_temi),
                     ("approx-cost", bench_approx_cost), ("ivf-lists", bench_ivf_lists),
                     ("seeding", bench_seeding), ("storage", bench_storage)):  # fmt: skip
        if name in what:
            fn(args, record)


if __name__ == "__main__":
    main()
