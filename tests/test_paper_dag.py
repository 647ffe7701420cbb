"""config/paper.yaml: its names are real, and its full DAG on a stand-in data tree lists
every expected job (a dry run: nothing is computed)."""

from __future__ import annotations

import re
import shutil
from collections import Counter

import pytest
from helpers import REPO, snakemake
from helpers.paper_grid import (
    PAPER_CONFIG,
    dag_job_counts,
    expected_job_counts,
    load_paper_config,
    make_standin_tree,
)


def test_paper_config_is_valid_and_uses_the_paper_settings():
    from clustermine.config import load_workflow_config

    cfg = load_workflow_config(
        [PAPER_CONFIG], REPO / "workflow/schemas/config.schema.yaml", {"data_root": "/data"}
    )
    config = cfg.raw
    assert config["datasets"]["imagenet-train"]["root"] == "/data/imagenet/train"
    main = config["idsets"][config["report"]["main_idset"]]
    assert main["benchmarks"] == ["ninco", "imagenet-o", "openimage-o", "inaturalist",
                                  "imagenet-ood", "textures"]
    assert main["extra_benchmarks"] == ["places", "textures-full", "sun", "ssb-hard", "nincov2"]
    assert main["test"][0] == "imagenet-val" and len(main["test"]) == 6
    assert config["label_sets"]["clustermine"]["C"] == 4000
    assert config["label_sets"]["posmine"]["min_votes"] == 100
    assert [config["label_sets"][k]["num_negatives"] for k in ("neglabel", "neglabel-40k")] == [
        10000, 40000]


@pytest.mark.slow
def test_paper_grid_dry_run_lists_every_job(tmp_path):
    config = load_paper_config()
    data = make_standin_tree(config, tmp_path / "data")
    # Where users run it: beside the embedded demo config, which must not leak in.
    shutil.copytree(REPO / "config", tmp_path / "config")
    counts, seconds = dag_job_counts(tmp_path, PAPER_CONFIG, {"data_root": str(data)})
    assert not [rule for rule in counts if "demo" in rule]
    full = snakemake(tmp_path, "-n", "--cores", "1", "--config", f"data_root={data}",
                     configfiles=[PAPER_CONFIG], check=True)
    assert "demo" not in full.stdout + full.stderr
    expected = expected_job_counts(config)
    assert dict(sorted(counts.items())) == dict(sorted(expected.items()))
    # Spot checks against hand-derived numbers, so that a shared mistake of the workflow and
    # the enumeration above still shows.
    models, main = len(config["models"]), config["idsets"]["imagenet"]
    shards = sum(config["datasets"][d].get("shards", 1) for d in (
        [main["train"]] + main["test"] + main["benchmarks"] + main["extra_benchmarks"]))
    assert counts["embed_images"] == models * shards
    # One metrics job per detector (its six ID test sets in one file), 18 methods per model.
    ablation_detectors = sum(len(s["methods"])
                             for k, s in config["idsets"].items() if k != "imagenet")
    assert counts["evaluate"] == counts["fit_detector"] == models * 18 + ablation_detectors
    assert counts["index_dataset"] == len(config["datasets"]) == 18
    assert counts["tables"] == counts["plots"] == 1
    assert counts["cluster_sweep"] == 1  # the default model's sweep reuses its clusterings
    # Per model TEMI C = 4000 and k-means C = 2000 (GradNorm); on the default model TEMI
    # C = 1k/2k/8k, k-means C = 4000 and the language-assisted C = 4000.
    assert counts["cluster"] == 2 * models + 5
    assert counts["text_density"] == models  # one per model's corpus text file, both label sets
    print(f"paper grid: {sum(counts.values())} jobs, DAG built in {seconds:.1f} s")
    # A label set's JSON sidecar is read beside its TSV, so every job reading the label set
    # whole names the sidecar as an input too: a job whose inputs are staged to node-local
    # scratch (docs/slurm.md §9) only has its inputs there. The report's plots and galleries
    # read the table alone.
    readers = Counter()
    jobs = re.findall(r"^(?:local)?rule (\w+):\n\s*input: (.*)$", full.stdout + full.stderr,
                      flags=re.MULTILINE)
    for rule, line in jobs:
        inputs = set(line.split(", "))
        for tsv in (f for f in inputs if re.fullmatch(r"results/[^/]+/labels/[^/]+\.tsv", f)):
            readers[rule] += 1
            if rule not in ("plots", "gallery"):
                assert tsv.removesuffix(".tsv") + ".json" in inputs, f"{rule}: {tsv} alone"
    assert readers["fit_detector"] == readers["evaluate"] > 0 and readers["cluster"] > 0
    assert readers["mine_labels"] > 0, readers
