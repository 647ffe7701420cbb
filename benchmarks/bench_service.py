"""Throughput of a deployed demo ClusterMine detector: ``clustermine score`` (images per
second) and ``clustermine serve`` (requests per second and latency percentiles with several
concurrent clients, and how many images each model call batched).

Uses the demo's detector when `make demo` has made it
(results/demo-minilm/detectors/fmnist.clustermine.h5, scoring resources/demo/fmnist-test);
otherwise builds the short demo detector of the tests first (about a minute,
tests/helpers/demo_detector.py): the same model architecture, so the same speed.

    python benchmarks/bench_service.py                        # about 2 minutes on 2 CPU cores
    python benchmarks/bench_service.py --clients 8 --requests 25 --per-request 4
    python benchmarks/bench_service.py --detector DET.h5 --images FOLDER
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_DETECTOR = REPO / "results/demo-minilm/detectors/fmnist.clustermine.h5"
DEMO_IMAGES = REPO / "resources/demo/fmnist-test"
CLI = [sys.executable, "-m", "clustermine.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def detector_and_images(args, scratch: Path) -> tuple[Path, Path]:
    if args.detector:
        return Path(args.detector), Path(args.images)
    if DEMO_DETECTOR.is_file() and DEMO_IMAGES.is_dir():
        return DEMO_DETECTOR, Path(args.images or DEMO_IMAGES)
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.demo_detector import build_demo_detector

    print("no demo detector under results/ (make demo): building the short one ...", flush=True)
    built = build_demo_detector(scratch)
    return built["detector"], Path(args.images or built["fmnist-new"])


def bench_command(detector: Path, images: Path, workers: int) -> None:
    out = subprocess.run(
        [*CLI, "score", str(detector), str(images), "-o", os.devnull, "--no-progress",
         "--workers", str(workers)],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit(out.stderr)
    summary = out.stderr.strip().splitlines()[-1]
    rate = re.search(r"\(([\d.]+) images/s\)", summary)
    print(f"clustermine score, --workers {workers}: {rate.group(1)} images/s  [{summary}]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_server(detector: Path, images: Path, args) -> None:
    import requests

    from clustermine.deploy.inputs import gather_paths

    paths = gather_paths([images])
    blobs = [(Path(p).name, Path(p).read_bytes()) for p in paths[:512]]
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", str(detector), "--port", str(port), "--max-batch", str(args.max_batch),
         "--max-wait-ms", str(args.max_wait_ms)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)

        def one(session, i):
            files = [
                ("files", (n, b, "image/png"))
                for n, b in (blobs[(i + j) % len(blobs)] for j in range(args.per_request))
            ]
            t0 = time.perf_counter()
            r = session.post(f"{url}/score", files=files, timeout=120)
            return time.perf_counter() - t0, r.status_code

        def client(k):
            session = requests.Session()
            return [one(session, k * args.requests + i) for i in range(args.requests)]

        for clients in sorted({1, args.clients}):
            with requests.Session() as warm:  # warm-up
                for i in range(5):
                    one(warm, i)
            before = requests.get(f"{url}/info").json()["served"]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = [x for part in pool.map(client, range(clients)) for x in part]
            wall = time.perf_counter() - t0
            after = requests.get(f"{url}/info").json()["served"]
            latencies = sorted(s for s, _ in results)
            errors = sum(code != 200 for _, code in results)
            calls = after["model_calls"] - before["model_calls"]
            n_images = after["images"] - before["images"]
            q = statistics.quantiles(latencies, n=100)
            print(
                f"clustermine serve, {clients} client(s) x {args.requests} requests x "
                f"{args.per_request} image(s): {len(results) / wall:.1f} requests/s, "
                f"{n_images / wall:.0f} images/s; latency p50 {q[49] * 1000:.0f} ms, p95 "
                f"{q[94] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms; {errors} errors; "
                f"{n_images / max(calls, 1):.1f} images per model call"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", help="detector file or bundle (with --images)")
    parser.add_argument("--images", help="folder of images to score")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--per-request", type=int, default=1, help="images per request")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    if args.detector and not args.images:
        parser.error("--detector needs --images")
    with tempfile.TemporaryDirectory() as scratch:
        detector, images = detector_and_images(args, Path(scratch))
        print(f"detector {detector}, images {images}")
        for workers in (0, 2):
            bench_command(detector, images, workers)
        bench_server(detector, images, args)


if __name__ == "__main__":
    main()
