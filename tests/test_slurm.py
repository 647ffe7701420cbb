"""The workflow through snakemake-executor-plugin-slurm on a real, local single-node SLURM cluster.

tests/slurm/cluster.sh starts the cluster (partitions `cpu` and `gpu`, two fake GPUs); it needs
root and the Debian packages slurmctld, slurmd, slurm-client and munge, else these tests skip.
The runs use a copy of profiles/slurm edited the way docs/slurm.md tells users to edit it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from helpers import REPO, SNAKEFILE

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
# Its own state directory and ports, so a cluster started by hand for debugging is left alone.
STATE_DIR = Path(tempfile.gettempdir()) / "clustermine-slurm-test"
PORT = "6927"
CORES = "2"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# Test-only executor settings: poll soon after submitting, and keep the SLURM log of every job
# (it names the rule and the job's resources) instead of only those of failed jobs.
TEST_EXECUTOR_ARGS = ["--slurm-init-seconds-before-status-checks", "2",
                      "--slurm-keep-successful-logs", "--max-threads", CORES, "--set-threads", "embed_images=1"]
# A late job, so that resuming reruns only a short tail of the workflow.
CANCEL_RULE, CANCEL_WILDCARDS = "score", "tiny-a_tiny_clustermine"
CANCEL_OUTPUT = "results/tiny-a/scores/tiny.clustermine.h5"
COMPARED_TREES = ("results", "resources")


@pytest.fixture(scope="module")
def slurm_env():
    """Environment for commands talking to a freshly started local cluster; stopped afterwards."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")
    env = {**os.environ, "CLUSTERMINE_SLURM_DIR": str(STATE_DIR),
           "CLUSTERMINE_SLURM_PORT": PORT, "HF_HUB_OFFLINE": "1"}
    check = subprocess.run([CLUSTER, "check"], env=env, capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"no local SLURM cluster: {check.stdout.strip()}")
    subprocess.run([CLUSTER, "down"], env=env, capture_output=True, text=True)
    up = subprocess.run([CLUSTER, "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, f"cluster.sh up failed:\n{up.stderr}"
    env["SLURM_CONF"] = str(STATE_DIR / "etc" / "slurm.conf")
    env["PATH"] = f"{STATE_DIR / 'bin'}{os.pathsep}{env['PATH']}"
    yield env
    subprocess.run([CLUSTER, "down"], env=env, capture_output=True, text=True)


def site_profile(dest: Path) -> Path:
    """profiles/slurm copied and edited for this cluster, which has no accounting database."""
    shutil.copytree(REPO / "profiles" / "slurm", dest)
    profile = dest / "profile.yaml"
    text, edits = re.subn(r"(?m)^slurm-status-command: sacct$", "slurm-status-command: squeue",
                          profile.read_text())
    assert edits == 1, "profiles/slurm/profile.yaml no longer sets slurm-status-command"
    profile.write_text(text)
    return dest


def slurm_jobs(env) -> dict[str, dict[str, str]]:
    """SLURM's record of every job it still holds (MinJobAge keeps finished ones), by job id."""
    out = subprocess.run(["scontrol", "--oneliner", "show", "job"], env=env,
                         capture_output=True, text=True, check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def executor_logs(workdir: Path) -> dict[str, tuple[str, Path]]:
    """SLURM job id -> (rule, log) from the executor's per-job logs, rule_<rule>/.../<id>.log."""
    logs = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule_dir = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0]
        logs[log.stem] = (rule_dir.removeprefix("rule_"), log)
    return logs


def declared_gpus(log: Path) -> int:
    """The `gpu` resource of the job, as the job's own Snakemake printed it."""
    match = re.search(r"^\s*resources: (.*)$", log.read_text(), flags=re.MULTILINE)
    assert match, f"no resources line in {log}"
    gpu = re.search(r"(?:^|, )gpu=(\d+)", match.group(1))
    return int(gpu.group(1)) if gpu else 0


def assert_placement(workdir: Path, env, skip=()) -> set[str]:
    """GPU jobs asked SLURM for GPUs and ran on `gpu`; the others asked for none, ran on `cpu`.

    Jobs in ``skip`` (cancelled before their Snakemake printed its resources) are left out.
    """
    records = slurm_jobs(env)
    rules = set()
    for jobid, (rule, log) in executor_logs(workdir).items():
        if jobid in skip:
            continue
        record = records[jobid]
        gpus = declared_gpus(log)
        tres = record.get("TresPerJob", "")
        if gpus:
            assert record["Partition"] == "gpu", f"{rule} job {jobid}: {record['Partition']}"
            assert tres == f"gres:gpu:{gpus}", f"{rule} job {jobid} asked SLURM for {tres!r}"
        else:
            assert record["Partition"] == "cpu", f"{rule} job {jobid}: {record['Partition']}"
            assert "gpu" not in tres and "gpu" not in record.get("TresPerNode", ""), (
                f"CPU rule {rule} job {jobid} asked SLURM for a GPU: {tres}")
        rules.add(f"{rule}:{'gpu' if gpus else 'cpu'}")
    return rules


def test_profile_sends_gpu_rules_to_gpu_partition(slurm_env, tmp_path):
    (tmp_path / "Snakefile").write_text(
        "rule all:\n"
        "    input: 'gpu.env', 'cpu.env'\n"
        "rule on_gpu:\n"
        "    output: 'gpu.env'\n"
        "    resources: gpu=1\n"
        "    shell: 'env > {output}'\n"
        "rule on_cpu:\n"
        "    output: 'cpu.env'\n"
        "    shell: 'env > {output}'\n"
    )
    profile = site_profile(tmp_path / "profile")
    run = subprocess.run([*SNAKEMAKE, "--workflow-profile", str(profile), *TEST_EXECUTOR_ARGS],
                         cwd=tmp_path, env=slurm_env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    gpu_env = dict(line.split("=", 1) for line in (tmp_path / "gpu.env").read_text().splitlines()
                   if "=" in line)
    cpu_env = dict(line.split("=", 1) for line in (tmp_path / "cpu.env").read_text().splitlines()
                   if "=" in line)
    assert gpu_env["SLURM_JOB_PARTITION"] == "gpu" and gpu_env["CUDA_VISIBLE_DEVICES"] in "01"
    assert cpu_env["SLURM_JOB_PARTITION"] == "cpu" and "CUDA_VISIBLE_DEVICES" not in cpu_env
    assert assert_placement(tmp_path, slurm_env) == {"on_gpu:gpu", "on_cpu:cpu"}


def test_scancel_while_writing_leaves_no_temporary_file(slurm_env, tmp_path):
    """SLURM ends a cancelled (or timed-out, pre-empted) job with SIGTERM, then SIGKILL."""
    (tmp_path / "job.py").write_text(
        "import sys, time\n"
        "from clustermine.atomic import atomic_path\n"
        "from clustermine.logs import setup_logging\n"
        "setup_logging('job.log')\n"
        "with atomic_path('out.h5') as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    time.sleep(120)\n"
    )
    jobid = subprocess.run(
        ["sbatch", "--parsable", "--output", "slurm.log", "--wrap", f"{sys.executable} job.py"],
        cwd=tmp_path, env=slurm_env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.h5.*.tmp")):
        assert time.monotonic() < deadline, (tmp_path / "slurm.log").read_text()
        time.sleep(0.1)
    subprocess.run(["scancel", jobid], env=slurm_env, check=True)
    while slurm_jobs(slurm_env)[jobid]["JobState"] in ("RUNNING", "COMPLETING"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert slurm_jobs(slurm_env)[jobid]["JobState"] == "CANCELLED"
    assert not (tmp_path / "out.h5").exists()
    assert not list(tmp_path.glob(".out.h5.*")), "the cancelled job left its temporary file"


def tree_files(workdir: Path, trees=COMPARED_TREES) -> dict[str, int]:
    """Relative path -> mtime of every file under the given trees of a work directory."""
    return {str(p.relative_to(workdir)): p.stat().st_mtime_ns
            for tree in trees if (workdir / tree).is_dir()
            for p in sorted((workdir / tree).rglob("*")) if p.is_file()}


def h5_items(path: Path) -> dict[str, np.ndarray]:
    items = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: items.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        items.update({f"@{k}": v for k, v in f.attrs.items()})
    return items


def assert_same_outputs(local: Path, remote: Path):
    files = tree_files(local)
    assert files.keys() == tree_files(remote).keys()
    for rel in files:
        a, b = local / rel, remote / rel
        if a.suffix == ".h5":
            ia, ib = h5_items(a), h5_items(b)
            assert ia.keys() == ib.keys(), rel
            for key, va in ia.items():
                if key.endswith("_seconds"):  # wall-clock timings differ between runs
                    continue
                vb = ib[key]
                if isinstance(va, np.ndarray) and va.dtype.kind == "f":
                    np.testing.assert_allclose(vb, va, rtol=1e-5, atol=1e-6, err_msg=f"{rel}:{key}")
                else:
                    assert np.array_equal(np.asarray(va), np.asarray(vb)), f"{rel}:{key}"
        elif a.suffix == ".json":
            assert json.loads(a.read_text()) == json.loads(b.read_text()), rel
        elif a.suffix in (".tsv", ".md", ".html", ".txt", ".csv"):
            assert a.read_text() == b.read_text(), rel


def wait_for(condition, proc, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := condition()):
            return found
        assert proc.poll() is None, f"the run ended before {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def small_config(project: Path, baseline: bool = True) -> Path:
    """The tiny project with two methods: a Y_GT baseline (without ``baseline``: not) and
    ClusterMine on k-means."""
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["clusterers"] = {"kmeans": {"method": "kmeans"}}
    config["label_sets"] = {"gt": {"miner": "gt"},
                            "clustermine": {"miner": "clustermine", "clusterer": "kmeans", "C": 3}}
    config["methods"] = {"mcm": {"score": "mcm", "labels": "gt"},
                         "clustermine": {"score": "eq1", "labels": "clustermine",
                                         "tau_factor": 0.1}}
    if not baseline:
        del config["label_sets"]["gt"], config["methods"]["mcm"]
        for idset in config["idsets"].values():
            if "methods" in idset:
                idset["methods"] = [m for m in idset["methods"] if m != "mcm"]
    path = project / "config-slurm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_workflow_on_slurm_matches_local_run_and_resumes_after_scancel(
    slurm_env, tiny_project, tmp_path
):
    config = small_config(tiny_project)
    local, remote = tmp_path / "local", tmp_path / "slurm"
    profile = site_profile(tmp_path / "profile")
    common = [*SNAKEMAKE, "-s", str(SNAKEFILE), "--configfile", str(config)]
    # The local reference run shares the CPUs with the SLURM run, which mostly waits on polls.
    with open(tmp_path / "local-run.log", "w") as out:
        local_run = subprocess.Popen([*common, "--directory", str(local), "--cores", CORES],
                                     env=slurm_env, stdout=out, stderr=subprocess.STDOUT)

    # The SLURM run, with one GPU job cancelled while it runs.
    slurm_cmd = [*common, "--directory", str(remote), "--workflow-profile", str(profile),
                 *TEST_EXECUTOR_ARGS]
    with open(tmp_path / "slurm-run-1.log", "w") as out:
        proc = subprocess.Popen(slurm_cmd, env=slurm_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        jobid = wait_for(lambda: next((j for j, (rule, log) in executor_logs(remote).items()
                                       if rule == CANCEL_RULE
                                       and log.parent.name == CANCEL_WILDCARDS), None),
                         proc, f"the {CANCEL_RULE} job to be submitted", timeout=400)
        state = wait_for(lambda: (s := slurm_jobs(slurm_env)[jobid]["JobState"]) != "PENDING"
                         and s, proc, "the job to start")
        assert state == "RUNNING", f"job {jobid} was {state} before it could be cancelled"
        subprocess.run(["scancel", jobid], env=slurm_env, check=True)
        proc.wait(timeout=300)
        local_run.wait(timeout=300)
    finally:
        if proc.poll() is None:  # a failed check: stop the run; SIGINT cancels its jobs
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if local_run.poll() is None:
            local_run.kill()
    assert local_run.returncode == 0, (tmp_path / "local-run.log").read_text()[-3000:]
    first = (tmp_path / "slurm-run-1.log").read_text()
    assert proc.returncode != 0, "the run succeeded although one of its jobs was cancelled"
    assert slurm_jobs(slurm_env)[jobid]["JobState"] == "CANCELLED", first[-3000:]
    assert not (remote / CANCEL_OUTPUT).exists()
    after_cancel = tree_files(remote)

    # Rerunning the same command finishes the work without redoing what was complete.
    rerun = subprocess.run(slurm_cmd, env=slurm_env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after_rerun = tree_files(remote)
    redone = sorted(p for p, t in after_cancel.items() if after_rerun.get(p, t) != t)
    assert not redone, f"outputs complete before the rerun were rewritten: {redone}"
    leftovers = [str(p.relative_to(remote)) for tree in COMPARED_TREES
                 for p in (remote / tree).rglob("*.tmp")]
    assert not leftovers, f"half-written files kept: {leftovers}"

    assert_same_outputs(local, remote)
    assert tree_files(local, ("logs",)).keys() == tree_files(remote, ("logs",)).keys()
    # The cancelled job was a GPU job: it was placed like one (its rerun is checked below).
    assert slurm_jobs(slurm_env)[jobid]["Partition"] == "gpu"
    assert slurm_jobs(slurm_env)[jobid].get("TresPerJob") == "gres:gpu:1"
    placed = assert_placement(remote, slurm_env, skip={jobid})
    assert any(p.endswith(":gpu") for p in placed) and any(p.endswith(":cpu") for p in placed)


def staging_profile(dest: Path, scratch: Path) -> Path:
    """The site profile with its optional staging block switched on as docs/slurm.md §9 says,
    each job's copies in its own folder under ``scratch`` (this cluster's "node-local" disk)."""
    site_profile(dest)
    profile = dest / "profile.yaml"
    text, edits = re.subn(r"(?m)^# ((?:default-storage-provider|remote-job-local-storage-prefix"
                          r"|shared-fs-usage): .*)$", r"\1", profile.read_text())
    assert edits == 3, "profiles/slurm/profile.yaml no longer has the three staging settings"
    text, edits = re.subn(r"(?m)^(remote-job-local-storage-prefix: )/tmp/clustermine-staging/",
                          lambda m: f"{m.group(1)}{scratch}/", text)
    assert edits == 1
    profile.write_text(text)
    return dest


def retrieved_inputs(log: Path) -> tuple[list[str], set[str]]:
    """A job's inputs as its Snakemake printed them, and the files it copied from storage."""
    text = log.read_text()
    match = re.search(r"^\s*input: (.*)$", text, flags=re.MULTILINE)
    inputs = [item.strip() for item in match.group(1).split(", ")] if match else []
    return inputs, set(re.findall(r"^Retrieving from storage: (.*)$", text, flags=re.MULTILINE))


def test_staged_jobs_read_node_local_copies_and_write_to_the_shared_folder(
    slurm_env, tiny_project, tmp_path
):
    config = small_config(tiny_project, baseline=False)  # ClusterMine's jobs: each kind once
    local, remote, scratch = tmp_path / "local", tmp_path / "slurm", tmp_path / "node-scratch"
    profile = staging_profile(tmp_path / "profile", scratch)
    common = [*SNAKEMAKE, "-s", str(SNAKEFILE), "--configfile", str(config)]
    with open(tmp_path / "local-run.log", "w") as out:
        local_run = subprocess.Popen([*common, "--directory", str(local), "--cores", CORES],
                                     env=slurm_env, stdout=out, stderr=subprocess.STDOUT)
    staged_cmd = [*common, "--directory", str(remote), "--workflow-profile", str(profile),
                  *TEST_EXECUTOR_ARGS]
    try:
        run = subprocess.run(staged_cmd, env=slurm_env, capture_output=True, text=True)
        local_run.wait(timeout=600)
    finally:
        if local_run.poll() is None:
            local_run.kill()
    assert run.returncode == 0, run.stderr[-3000:]
    assert local_run.returncode == 0, (tmp_path / "local-run.log").read_text()[-3000:]

    # Every SLURM job copied each of its inputs to its own scratch folder (the prefix expanded
    # inside the job), and read it there: the outputs record the files they were made from,
    # and a job that read its copies records their workflow paths only by mapping them back.
    jobs = executor_logs(remote)
    assert {rule for rule, _ in jobs.values()} >= {"embed_images", "cluster", "score"}
    for jobid, (rule, log) in jobs.items():
        inputs, retrieved = retrieved_inputs(log)
        assert inputs, f"{rule} job {jobid} printed no inputs"
        for item in inputs:
            assert item.endswith(" (retrieve from storage)"), f"{rule} job {jobid}: {item}"
            assert item.removesuffix(" (retrieve from storage)") in retrieved, (rule, item)
        assert (scratch / jobid / "fs").is_dir(), f"{rule} job {jobid} staged nowhere"
    # A job's own log names the staged copy it wrote (here the clustering job's).
    cluster_job = next(j for j, (rule, _) in jobs.items() if rule == "cluster")
    cluster_log = (remote / "logs" / "tiny-a" / "clusters" / "id-train.kmeans-C3.log").read_text()
    assert f"{scratch / cluster_job / 'fs' / 'results'}/" in cluster_log
    # The outputs landed in the shared folder, equal to the run without staging (recorded
    # source paths included), and no copy of a result was left on the "node".
    assert_same_outputs(local, remote)
    left = [p for p in scratch.rglob("*") if p.is_file() and "results" in p.parts]
    assert not left, f"staged copies left behind: {left}"
    assert not any(str(scratch) in p.read_text(errors="replace")
                   for p in (remote / "results").rglob("*") if p.suffix in (".json", ".tsv"))

    # Reruns plan nothing, with staging and without it.
    for cmd in (staged_cmd, [*common, "--directory", str(remote), "--cores", CORES]):
        dry = subprocess.run([*cmd, "--dry-run"], env=slurm_env, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]
