"""Real Snakemake runs of the project's workflow on tiny data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import yaml
from helpers import SNAKEFILE, file_times, run_workflow, snakemake

from clustermine.h5io import read_image_embeddings, read_text_embeddings

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
EMBED_TARGETS = [
    "results/{m}/images/id-train.h5", "results/{m}/images/id-test.h5",
    "results/{m}/images/ood.h5", "results/{m}/text/words.simple.h5",
]


def targets(model):
    return [t.format(m=model) for t in EMBED_TARGETS]


def test_embedding_stage(tiny_project, capfd):
    run_workflow(tiny_project, targets("tiny-a"))
    # encode.num_workers: 0 still gives the jobs one thread (OMP_NUM_THREADS=0 is invalid).
    assert "Invalid value for environment variable" not in capfd.readouterr().err
    test = read_image_embeddings(tiny_project / "results/tiny-a/images/id-test.h5")
    assert len(test) == 15 and test.attrs["unreadable_files"] == ["cat/corrupt.png"]
    assert test.attrs["num_shards"] == 2 and test.class_names == ["car", "cat", "dog"]
    assert test.attrs["model_arch"] == "clustermine-tiny" and test.attrs["random_weights"]
    log = (tiny_project / "logs/tiny-a/images/id-test.log").read_text()
    assert "unreadable image left out: cat/corrupt.png" in log
    text = read_text_embeddings(tiny_project / "results/tiny-a/text/words.simple.h5")
    assert text.names[:3] == ["dog", "cat", "car"] and len(text) == 30  # classes already listed
    assert text.attrs["prompts"] == "simple" and len(text.attrs["templates"]) == 7
    assert not list((tiny_project / "results").rglob("*.tmp"))
    # shards are temporary: gone once merged
    assert not list((tiny_project / "results/tiny-a/images/shards").glob("*.h5"))


def test_changing_one_model_reruns_only_its_files(tiny_project):
    config = yaml.safe_load((tiny_project / "config.yaml").read_text())
    config["models"]["tiny-b"] = {"arch": "clustermine-tiny", "pretrained": None, "batch_size": 8}
    (tiny_project / "config.yaml").write_text(yaml.safe_dump(config))
    all_targets = targets("tiny-a") + targets("tiny-b")
    run_workflow(tiny_project, all_targets)
    before = file_times(tiny_project / "results")
    config["models"]["tiny-b"]["precision"] = "fp32"
    (tiny_project / "config.yaml").write_text(yaml.safe_dump(config))
    time.sleep(0.05)
    run_workflow(tiny_project, all_targets)
    after = file_times(tiny_project / "results")
    changed = sorted(p for p in after if after[p] != before.get(p))
    assert changed == sorted(t.removeprefix("results/") for t in targets("tiny-b"))


def test_misspelt_config_key_is_named(tiny_project):
    config = yaml.safe_load((tiny_project / "config.yaml").read_text())
    config["datasets"]["ood"]["limt"] = 3
    (tiny_project / "config.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [*SNAKEMAKE, "-s", str(SNAKEFILE), "--configfile", "config.yaml", "-n", "--cores", "1"],
        cwd=tiny_project, capture_output=True, text=True,
    )
    assert out.returncode != 0
    assert "'limt' was unexpected" in out.stdout + out.stderr


def test_unknown_dataset_reference_is_named(tiny_project):
    config = yaml.safe_load((tiny_project / "config.yaml").read_text())
    config["idsets"]["tiny"]["benchmarks"] = ["odd"]
    (tiny_project / "config.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [*SNAKEMAKE, "-s", str(SNAKEFILE), "--configfile", "config.yaml", "-n", "--cores", "1"],
        cwd=tiny_project, capture_output=True, text=True,
    )
    assert out.returncode != 0
    assert "idsets.tiny.benchmarks names dataset 'odd'" in out.stdout + out.stderr


def test_killed_job_leaves_nothing_that_looks_complete(tiny_project):
    target = "results/tiny-a/images/id-train.h5"
    shard = tiny_project / "results/tiny-a/images/shards/id-train.0-of-1.h5"
    job_log = tiny_project / "logs/tiny-a/images/shards/id-train.0-of-1.log"
    proc = subprocess.Popen(
        [*SNAKEMAKE, "-s", str(SNAKEFILE), "--configfile", "config.yaml", "--cores", "1",
         target],
        cwd=tiny_project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not job_log.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "workflow finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not shard.exists() and not (tiny_project / target).exists()
    # Snakemake's lock outlives a kill -9: the rerun says so, --unlock removes it
    # (docs/workflow.md), and the rerun then finishes the job and leaves a valid file.
    locked = snakemake(tiny_project, "--cores", "1", target)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    snakemake(tiny_project, "--unlock", check=True)
    snakemake(tiny_project, "--cores", "1", target, check=True)
    assert len(read_image_embeddings(tiny_project / target)) == 36
    assert not list((tiny_project / "results").rglob("*.tmp"))
