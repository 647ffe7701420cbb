"""How long Snakemake takes to build the DAG of the paper grid (config/paper.yaml), and of the
same grid with 4× the models, on a stand-in data tree (a dry run: nothing is computed).

    .venv/bin/python benchmarks/bench_dag.py [--factors 1 4] [--repeats 1]

Prints, per model factor, the number of models and jobs and the wall-clock and CPU time of
parsing the workflow plus building its DAG (best of --repeats runs, each in a fresh process so
that no cache of an earlier run helps). The stand-in tree is written before timing starts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from helpers.paper_grid import (  # noqa: E402
    dag_job_counts,
    load_paper_config,
    make_standin_tree,
    scale_models,
)


def one_run(factor: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = scale_models(load_paper_config(), factor)
        data = make_standin_tree(config, tmp / "data")
        configfile = tmp / "paper.yaml"
        configfile.write_text(yaml.safe_dump(config, sort_keys=False))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        counts, seconds = dag_job_counts(tmp, configfile, {"data_root": str(data)})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"factor": factor, "models": len(config["models"]), "jobs": sum(counts.values()),
            "seconds": seconds, "cpu_seconds": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        print(json.dumps(one_run(args.one)))
        return
    print(f"{'models':>7} {'jobs':>8} {'wall (s)':>9} {'CPU (s)':>8}   (cpus: {os.cpu_count()})")
    for factor in args.factors:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(factor)],
                check=True, capture_output=True, text=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["seconds"])
        print(f"{best['models']:>7} {best['jobs']:>8} {best['seconds']:>9.1f} "
              f"{best['cpu_seconds']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
