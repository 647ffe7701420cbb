"""The drift monitor (clustermine.drift) on deployment streams built from the demo's data,
after ``make demo``: the figures of docs/deploy.md, "Drift".

The detector's ID test set is split in two at random for every stream (seeded): one half
calibrates the detector (its held-out ID scores and threshold at 95% acceptance), the other
is the stream's ID traffic, drawn without replacement, so that no stream image is a
calibration image and no image comes twice (with the demo's 2,000 ID test images, a stream
holds two windows of 500; many streams make the figures). Streams:

- **no shift**: ID images only, in random order: false alarms per 10,000 images;
- **new things arrive**: each benchmark mixed into the ID traffic at 5, 10, 20 and 50%:
  images until the first "new things arrive" alarm, and the share of windows that raise it;
- **the ID moved**: the same ID images under a corruption (the demo's CoVer views, encoded by
  the workflow: ``results/{model}/views/{view}/{test}.h5``): the share of windows with each
  alarm and the mean ID-shift AUC.

    python benchmarks/bench_drift.py                        # the demo's ClusterMine detector
    python benchmarks/bench_drift.py --method mcm --window 250 --streams 20
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from clustermine.detectors import load_detector
    from clustermine.detectors.calibration import Calibration
    from clustermine.drift import ID_MOVED, NEW_THINGS, DriftMonitor
    from clustermine.h5io import read_image_embeddings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results/demo-minilm")
    p.add_argument("--idset", default="fmnist")
    p.add_argument("--method", default="clustermine")
    p.add_argument("--test", default="fmnist-test", help="the ID test set (ID traffic)")
    p.add_argument("--benchmarks", nargs="+",
                   default=["digits-heldout", "tuxpaint-heldout", "textures", "unseen-digits"])
    p.add_argument("--views", nargs="+", default=["brightness-1", "motion_blur-1",
                                                  "gaussian_blur-1"])  # fmt: skip
    p.add_argument("--rates", nargs="+", type=float, default=[0.05, 0.10, 0.20, 0.50])
    p.add_argument("--window", type=int, default=500)
    p.add_argument("--level", type=float, default=0.01)
    p.add_argument("--windows", type=int, default=2, help="windows per stream (their "
                   "images come from one half of the ID test set)")
    p.add_argument("--streams", type=int, default=1000, help="streams per case")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    results = Path(args.results)
    t0 = time.perf_counter()
    det = load_detector(results / f"detectors/{args.idset}.{args.method}.h5", "cpu")

    def scores(path: Path) -> np.ndarray:
        return det.score(read_image_embeddings(path).embeddings)

    id_scores = scores(results / f"images/{args.test}.h5")
    ood = {b: scores(results / f"images/{b}.h5") for b in args.benchmarks}
    shifted = {v: scores(results / f"views/{v}/{args.test}.h5") for v in args.views
               if (results / f"views/{v}/{args.test}.h5").exists()}  # fmt: skip
    rng = np.random.default_rng(args.seed)
    n_id, m = len(id_scores), args.window * args.windows
    print(f"bench_drift: {args.method} on {args.idset} ({n_id} ID test images, calibration and "
          f"traffic halves redrawn per stream), window {args.window}, level {args.level}, "
          f"{args.streams} streams of {args.windows} windows, seed {args.seed}; "
          f"{platform.machine()}", flush=True)  # fmt: skip

    def stream_monitor():
        order = rng.permutation(n_id)
        half = order[: n_id // 2]
        cal = Calibration(id_scores[half])
        monitor = DriftMonitor(cal.scores, cal.threshold(0.95), args.window, args.level)
        return monitor, order[n_id // 2 :]

    def draw(rows: np.ndarray, size: int) -> np.ndarray:
        """``size`` of ``rows`` without replacement."""
        if size > len(rows):
            raise SystemExit(f"bench_drift: a stream needs {size} ID images, a half of the ID "
                             f"test set holds {len(rows)}: fewer --windows or a smaller "
                             "--window")  # fmt: skip
        return rows[rng.permutation(len(rows))[:size]]

    # 1. No shift.
    alarms = {NEW_THINGS: 0, ID_MOVED: 0}
    images = 0
    for _ in range(args.streams):
        mon, traffic = stream_monitor()
        mon.add(id_scores[draw(traffic, m)])
        images += mon.images
        for kind in alarms:
            alarms[kind] += mon.alarms[kind]
    print(f"\nno shift: {images:,} images in {images // args.window} windows; false alarms per "
          f"10,000 images: new things {1e4 * alarms[NEW_THINGS] / images:.2f}, ID moved "
          f"{1e4 * alarms[ID_MOVED] / images:.2f} (stated at most "
          f"{1e4 * args.level / 2 / args.window:.2f} each)")  # fmt: skip

    # 2. New things arrive.
    print("\nnew things arrive: images until the first alarm (median over streams; '>' when "
          "some streams raised none), share of windows with 'new things' / 'ID moved'")
    print("| benchmark | " + " | ".join(f"{r:.0%}" for r in args.rates) + " |")
    print("|---|" + "---:|" * len(args.rates))
    for bench, bench_scores in ood.items():
        cells = []
        for rate in args.rates:
            first, hit, moved, windows = [], 0, 0, 0
            for _ in range(args.streams):
                mon, traffic = stream_monitor()
                new = rng.random(m) < rate
                x = np.empty(m)
                x[~new] = id_scores[draw(traffic, int((~new).sum()))]
                # (a benchmark smaller than the stream's share of it comes again)
                x[new] = bench_scores[rng.integers(len(bench_scores), size=int(new.sum()))]
                tests = mon.add(x)
                windows += len(tests)
                hit += sum(NEW_THINGS in t.verdict for t in tests)
                moved += sum(ID_MOVED in t.verdict for t in tests)
                alarm = [i for i, t in enumerate(tests) if NEW_THINGS in t.verdict]
                first.append((alarm[0] + 1) * args.window if alarm else np.inf)
            med = np.median(first)
            cells.append(f"{'>' + str(m) if np.isinf(med) else int(med)}"
                         f" ({hit / windows:.0%} / {moved / windows:.0%})")  # fmt: skip
        print(f"| {bench} | " + " | ".join(cells) + " |")

    # 3. The ID moved.
    print("\nthe ID moved (the ID test images under a corruption): share of windows with "
          "'new things' / 'ID moved', mean flagged share, mean ID-shift AUC, mean median p-value")
    for view, view_scores in shifted.items():
        new = moved = windows = 0
        flagged, auc, med_p = [], [], []
        for _ in range(args.streams):
            mon, traffic = stream_monitor()
            tests = mon.add(view_scores[draw(traffic, m)])
            windows += len(tests)
            new += sum(NEW_THINGS in t.verdict for t in tests)
            moved += sum(ID_MOVED in t.verdict for t in tests)
            flagged += [t.flagged_share for t in tests]
            auc += [t.id_shift_auc for t in tests]
            med_p += [t.median_p_value for t in tests]
        print(f"- {view}: new things {new / windows:.0%}, ID moved {moved / windows:.0%}, "
              f"flagged {np.mean(flagged):.1%} (5% expected), AUC {np.mean(auc):.3f}, "
              f"median p {np.mean(med_p):.2f}")  # fmt: skip
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
