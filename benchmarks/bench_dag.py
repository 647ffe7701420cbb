"""How long Snakemake takes to plan the paper grid (config/paper.yaml), and the same grid with 4×
the models, on a stand-in data tree (nothing is computed).

    .venv/bin/python benchmarks/bench_dag.py [--factors 1 4] [--repeats 1]

Prints, per model factor, the number of models and jobs and four figures, each the best of
--repeats runs in a fresh process (no cache of an earlier run helps; the stand-in tree is written
before any clock starts):

- dry run: ``snakemake -n --quiet rules`` as a user types it, wall and CPU seconds: starting
  Python, importing Snakemake, parsing the workflow, building the DAG and listing its jobs;
- parse + DAG: parsing the workflow and building its DAG in a process that has already imported
  Snakemake (the API, then ``_build_dag``), without listing the jobs;
- import: starting Python and importing Snakemake's command line, which every dry run pays
  whatever the workflow;
- floor: the same dry run of a workflow written to cost Snakemake as little as a rule of ours
  can: as many jobs, in two rules (a job of one reads the file of one of the other), each
  declaring only what every rule of ours declares (a log, a benchmark, a param function, a
  memory function and a script), under this workflow's own profile (its default resources).
  What the floor takes is Snakemake's own cost for that many jobs, whatever a workflow does;
  the dry run over the floor is what this workflow adds to it.

The second is the figure earlier versions of this benchmark printed (5.1 s for 3,897 jobs at
bb2890b); the first is what the command costs a user. docs/performance.md compares them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from helpers import SNAKEFILE, parse_job_table  # noqa: E402
from helpers.paper_grid import (  # noqa: E402
    dag_job_counts,
    load_paper_config,
    make_standin_tree,
    scale_models,
)


def build_dag_in_process(workdir: Path, configfile: Path) -> tuple[int, float]:
    """Jobs the grid plans and the seconds of parsing plus DAG building, Snakemake imported
    before the clock starts. Uses ``Workflow._build_dag``, Snakemake's own step between parsing
    and scheduling (no public API stops there)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    start = time.perf_counter()
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=SNAKEFILE,
            workdir=workdir,
        )
        dag_api = workflow_api.dag(dag_settings=DAGSettings(targets=set()))
        workflow = dag_api.workflow_api._workflow
        workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True,
                              nolock=True)
        workflow._build_dag()
        jobs = Counter(job.rule.name for job in workflow.dag.needrun_jobs())
    return sum(jobs.values()), time.perf_counter() - start


FLOOR_SNAKEFILE = """\
N_B = int(config["jobs_b"])
N_A = int(config["jobs_a"])


def mem_mb(wildcards, input, attempt):
    return 1000 * attempt


rule all:
    input:
        expand("results/m{i}/b.h5", i=range(N_B)),
        expand("results/m{i}/a.h5", i=range(N_B, N_A)),


rule a:
    output:
        "results/m{i}/a.h5",
    log:
        "logs/m{i}/a.log",
    benchmark:
        "benchmarks/m{i}/a.tsv"
    params:
        name=lambda wildcards: wildcards.i,
    resources:
        mem_mb=mem_mb,
    script:
        "job.py"


rule b:
    input:
        "results/m{i}/a.h5",
    output:
        "results/m{i}/b.h5",
    log:
        "logs/m{i}/b.log",
    benchmark:
        "benchmarks/m{i}/b.tsv"
    params:
        name=lambda wildcards: wildcards.i,
    resources:
        mem_mb=mem_mb,
    script:
        "job.py"
"""


def floor_dry_run(jobs: int, folder: Path) -> float:
    """Seconds of ``snakemake -n --quiet rules`` on FLOOR_SNAKEFILE planning ``jobs`` jobs (the
    target rule, ``b`` jobs each reading an ``a`` file, and the rest ``a`` jobs), with this
    workflow's profile beside it as Snakemake finds it for the grid's dry run."""
    folder.mkdir()
    (folder / "Snakefile").write_text(FLOOR_SNAKEFILE)
    (folder / "job.py").write_text("")
    shutil.copytree(SNAKEFILE.parent / "profiles", folder / "profiles")
    n_b = (jobs - 1) // 2
    n_a = jobs - 1 - n_b
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1",
         "--config", f"jobs_a={n_a}", f"jobs_b={n_b}"],
        cwd=folder, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"the floor workflow's dry run failed:\n{out.stderr[-3000:]}")
    planned = parse_job_table(out.stdout + out.stderr)
    if sum(planned.values()) != jobs:
        raise SystemExit(f"the floor workflow planned {sum(planned.values())} jobs, not {jobs}")
    return seconds


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(factor: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = scale_models(load_paper_config(), factor)
        config["data_root"] = str(make_standin_tree(config, tmp / "data"))
        configfile = tmp / "paper.yaml"
        configfile.write_text(yaml.safe_dump(config, sort_keys=False))
        before = child_cpu()
        counts, seconds = dag_job_counts(tmp, configfile)
        cpu = child_cpu() - before
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import snakemake.cli"], check=True)
        imports = time.perf_counter() - start
        cwd = os.getcwd()
        os.chdir(tmp)  # Snakemake's API resolves the config's relative paths here
        try:
            jobs, build = build_dag_in_process(tmp, configfile)
        finally:
            os.chdir(cwd)
        floor = floor_dry_run(sum(counts.values()), tmp / "floor")
    if jobs != sum(counts.values()):
        raise SystemExit(f"the dry run planned {sum(counts.values())} jobs, the DAG {jobs}")
    return {"factor": factor, "models": len(config["models"]), "jobs": jobs,
            "seconds": seconds, "cpu_seconds": cpu, "build_seconds": build,
            "import_seconds": imports, "floor_seconds": floor}


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
    print(f"{'models':>7} {'jobs':>7} {'dry run (s)':>12} {'CPU (s)':>8} {'parse + DAG (s)':>16} "
          f"{'import (s)':>11} {'floor (s)':>10} {'dry run / floor':>16}   "
          f"(cpus: {os.cpu_count()})")
    for factor in args.factors:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(factor)],
                check=True, capture_output=True, text=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = {key: min(run[key] for run in runs)
                for key in ("seconds", "cpu_seconds", "build_seconds", "import_seconds",
                            "floor_seconds")}
        print(f"{runs[0]['models']:>7} {runs[0]['jobs']:>7} {best['seconds']:>12.1f} "
              f"{best['cpu_seconds']:>8.1f} {best['build_seconds']:>16.1f} "
              f"{best['import_seconds']:>11.1f} {best['floor_seconds']:>10.1f} "
              f"{best['seconds'] / best['floor_seconds']:>16.2f}", flush=True)


if __name__ == "__main__":
    main()
