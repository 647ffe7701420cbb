"""Re-mining (clustermine.remine) on deployment streams built from the demo's data, after
``make demo``: the figures of docs/deploy.md, "Re-mining".

The ID test set is split in two (seeded): one half is the deployment's ID traffic, the other
the ID side of the evaluation. Each benchmark in turn arrives in the traffic at a share of
the images (0% is plain ID traffic), and the detector is re-mined from the stream with and
without the contamination guard. Printed: the names added and removed, how many of the
arriving images were mined (not left out by the guard), and the AUROC of the old and the new
detector on every benchmark (its images not in the stream). Then the ID moves instead: the
traffic is the same ID images under a corruption (the demo's CoVer views), and re-mining
should keep the concept set nearly as it was.

    python benchmarks/bench_remine.py
    python benchmarks/bench_remine.py --method clustermine --rates 0 0.1 0.3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from clustermine.deploy.detector import load_deployed_detector
    from clustermine.h5io import read_image_embeddings
    from clustermine.metrics import auroc
    from clustermine.remine import RemineSettings, remine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results/demo-minilm")
    p.add_argument("--idset", default="fmnist")
    p.add_argument("--method", default="clustermine")
    p.add_argument("--test", default="fmnist-test")
    p.add_argument("--benchmarks", nargs="+",
                   default=["digits-heldout", "tuxpaint-heldout", "textures", "unseen-digits"])
    p.add_argument("--arriving", nargs="+", default=["digits-heldout", "tuxpaint-heldout"])
    p.add_argument("--rates", nargs="+", type=float, default=[0.0, 0.1, 0.3])
    p.add_argument("--guard-p", type=float, default=0.01)
    p.add_argument("--min-support", type=int, default=5)
    p.add_argument("--views", nargs="+", default=["brightness-1", "motion_blur-1",
                                                  "gaussian_blur-1"])  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    results = Path(args.results)
    t0 = time.perf_counter()
    det = load_deployed_detector(results / f"detectors/{args.idset}.{args.method}.h5",
                                 device="cpu")  # fmt: skip
    data = {d: read_image_embeddings(results / f"images/{d}.h5")
            for d in [args.test, *args.benchmarks]}  # fmt: skip
    rng = np.random.default_rng(args.seed)
    ids = data[args.test]
    order = rng.permutation(len(ids.paths))
    traffic, evaluation = order[: len(order) // 2], order[len(order) // 2 :]
    old_pos = set(det.detector.text_pos.names)
    print(f"bench_remine: {args.method} on {args.idset} ({len(old_pos)} positives); "
          f"{len(traffic)} ID images of {args.test} as traffic, {len(evaluation)} to evaluate; "
          f"guard p <= {args.guard_p}, min support {args.min_support}, seed {args.seed}",
          flush=True)  # fmt: skip

    def aurocs(detector, left_out: dict[str, np.ndarray]) -> list[float]:
        id_scores = detector.score(ids.embeddings[evaluation])
        return [100 * auroc(id_scores, detector.score(data[b].embeddings[left_out[b]]))
                for b in args.benchmarks]  # fmt: skip

    everything = {b: np.arange(len(data[b].paths)) for b in args.benchmarks}
    print("old detector AUROC: " + ", ".join(
        f"{b} {a:.2f}" for b, a in zip(args.benchmarks, aurocs(det.detector, everything))))
    print("\n| arriving | share | guard | added (first 6) | removed | arriving images mined | "
          + " | ".join(f"AUROC {b}" for b in args.benchmarks) + " |")
    print("|---|---:|---|---|---:|---:|" + "---:|" * len(args.benchmarks))
    for bench in args.arriving:
        for rate in args.rates:
            n_new = min(len(data[bench].paths), int(round(rate / (1 - rate) * len(traffic))))
            new_rows = rng.permutation(len(data[bench].paths))[:n_new]
            emb = np.concatenate([ids.embeddings[traffic], data[bench].embeddings[new_rows]])
            paths = [f"{args.test}/{ids.paths[i]}" for i in traffic] + [
                f"{bench}/{data[bench].paths[i]}" for i in new_rows]  # fmt: skip
            left_out = dict(everything)
            left_out[bench] = np.setdiff1d(everything[bench], new_rows)
            for guard in (None, args.guard_p):
                settings = RemineSettings(guard_p=guard, min_support=args.min_support,
                                          seed=args.seed)  # fmt: skip
                out = remine(det.detector, emb, paths, settings)
                added = [c.name for c in out.diff if c.change == "added"]
                removed = [c.name for c in out.diff if c.change == "removed"]
                p_old = det.predict(embeddings=emb[len(traffic):]).p_values
                mined = n_new if guard is None else int((p_old > guard).sum())
                cells = [f"{a:.2f}" for a in aurocs(out.detector, left_out)]
                print(f"| {bench} | {rate:.0%} | {'p <= ' + str(guard) if guard else 'none'} | "
                      f"{len(added)}: {', '.join(added[:6])} | {len(removed)} | "
                      f"{mined} of {n_new} | " + " | ".join(cells) + " |", flush=True)  # fmt: skip
    print("\nthe ID moved: the traffic's ID images under a corruption")
    print("| view | guard | added | removed | kept | " + " | ".join(
        f"AUROC {b}" for b in args.benchmarks) + " |")  # fmt: skip
    print("|---|---|---|---|---:|" + "---:|" * len(args.benchmarks))
    for view in args.views:
        path = results / f"views/{view}/{args.test}.h5"
        if not path.exists():
            continue
        shifted = read_image_embeddings(path)
        emb = shifted.embeddings[traffic]
        paths = [f"{view}/{shifted.paths[i]}" for i in traffic]
        for guard in (None, args.guard_p):
            out = remine(det.detector, emb, paths, RemineSettings(
                guard_p=guard, min_support=args.min_support, seed=args.seed))  # fmt: skip
            added = [c.name for c in out.diff if c.change == "added"]
            removed = [c.name for c in out.diff if c.change == "removed"]
            kept = sum(c.change == "kept" for c in out.diff)
            cells = [f"{a:.2f}" for a in aurocs(out.detector, everything)]
            print(f"| {view} | {'p <= ' + str(guard) if guard else 'none'} | {len(added)}: "
                  f"{', '.join(added[:6])} | {len(removed)}: {', '.join(removed[:6])} | {kept} | "
                  + " | ".join(cells) + " |", flush=True)  # fmt: skip
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
