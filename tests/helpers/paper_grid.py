"""The paper grid (config/paper.yaml) on a stand-in data tree: build its DAG and count jobs.

Used by tests/test_paper_dag.py and benchmarks/bench_dag.py. The expected counts are enumerated
from the config and the plugin catalog (what each miner and clusterer needs), independently
of the workflow's own target code. The stand-in tree has the
folder layout docs/results.md asks for, with a few tiny images per dataset, so that a dry run
sees the same inputs a real one would.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from helpers import REPO, planned_jobs

from clustermine import catalog
from clustermine.weights import is_pretrained_tag

PAPER_CONFIG = REPO / "config" / "paper.yaml"


def load_paper_config() -> dict[str, Any]:
    return yaml.safe_load(PAPER_CONFIG.read_text())


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_standin_tree(config: dict[str, Any], data_root: Path, per_class: int = 2) -> Path:
    """Two classes of ``per_class`` images per image folder, three listed images per file list,
    the class-name maps and a few words per word-list corpus, under ``data_root``."""
    seed = 0
    for spec in config["datasets"].values():
        root = data_root / spec["root"]
        if spec["type"] == "imagefolder":
            for c in ("c0", "c1"):
                for i in range(per_class):
                    seed += 1
                    _png(root / c / f"{i}.png", seed)
            if "class_map" in spec:
                (data_root / spec["class_map"]).write_text("c0 class zero\nc1 class one\n")
        elif spec["type"] == "filelist":
            names = [f"img{i}.png" for i in range(3)]
            for name in names:
                seed += 1
                _png(root / name, seed)
            listing = data_root / spec["list"]
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text("".join(f"{n}\n" for n in names))
    for spec in config.get("corpora", {}).values():
        if spec["type"] == "wordlist":
            path = data_root / spec["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("dog\ncat\nriver\nred\n")
    return data_root


def scale_models(config: dict[str, Any], factor: int) -> dict[str, Any]:
    """The config with every model repeated ``factor`` times (slugs suffixed -r1, -r2, ...)."""
    config = copy.deepcopy(config)
    models = {}
    for slug, spec in config["models"].items():
        models[slug] = spec
        for r in range(1, factor):
            models[f"{slug}-r{r}"] = dict(spec)
    config["models"] = models
    return config


def dag_job_counts(workdir: Path, configfile: Path, overrides: dict[str, Any] | None = None,
                   targets: list[str] | None = None) -> tuple[Counter, float]:
    """Jobs per rule that a run would execute (from a dry run's job table), and the seconds
    the dry run took (parsing the Snakefile and building the DAG)."""
    args = [f"{k}={v}" for k, v in (overrides or {}).items()]
    start = time.perf_counter()
    counts = planned_jobs(workdir, *(["--config", *args] if args else []), *(targets or []),
                          configfiles=[configfile])
    return counts, time.perf_counter() - start


def expected_job_counts(config: dict[str, Any]) -> Counter:
    """Jobs per rule the grid must produce, enumerated from the config and the path layout
    (one job per distinct output file), independently of the workflow's own target code."""
    models = list(config["models"])
    datasets = config["datasets"]
    label_sets, methods = config.get("label_sets", {}), config.get("methods", {})
    clusterers = config.get("clusterers", {})
    files: dict[str, set] = {}

    def add(rule: str, *key) -> None:
        files.setdefault(rule, set()).add(key)

    def add_clustering(model: str, dataset: str, clusterer: str, c: int) -> None:
        add("cluster", model, dataset, clusterer, c)
        plugin = catalog.clusterer(clusterers[clusterer]["method"])
        search = plugin.knn_search(clusterers[clusterer])
        if search is not None:
            add("knn", model, dataset, search.name)
        for label_set in plugin.references(clusterers[clusterer]).values():
            # The filtered names: a label set of its ID set.
            add_label_set(model, plugin.value_of("idset", clusterers[clusterer]), label_set)

    def add_label_set(model: str, idset: str, slug: str) -> None:
        spec = config["idsets"][idset]
        prompts = spec.get("prompts", "simple")
        pending = [slug]
        while pending:  # a label set and those whose positives it matches or takes
            current = pending.pop()
            ls = label_sets[current]
            miner = catalog.miner(ls["miner"])
            add("mine_labels", model, idset, current)
            if miner.has("zero_shot"):
                add("zero_shot_labels", model, spec["train"], spec["corpus"], prompts)
            if miner.has("clusters"):
                add_clustering(model, spec["train"], ls[miner.with_role("clusterer").name],
                               ls[miner.with_role("num_clusters").name])
            if miner.has("text_density"):
                add("text_density", model, spec["corpus"], prompts,
                    miner.value_of("density_k", ls))
            if miner.has("conjugated_labels"):  # the seed defaults to the global one
                seed = ls.get(miner.with_role("seed").name, config.get("seed", 0))
                add("conjugated_names", spec["corpus"], seed)
                add("embed_conjugated", model, spec["corpus"], seed)
            pending += list(miner.references(ls).values())

    for idset, spec in config["idsets"].items():
        prompts = spec.get("prompts", "simple")
        used = [spec["train"], *spec.get("test", []), *spec.get("benchmarks", []),
                *spec.get("extra_benchmarks", [])]
        for model in spec.get("models", models):
            spec_m = config["models"][model]
            if is_pretrained_tag(spec_m.get("pretrained")):  # a local job per weights
                add("fetch_weights", spec_m["arch"], spec_m["pretrained"])
            for ds in used:
                add("merge_image_shards", model, ds)
                for shard in range(datasets[ds].get("shards", 1)):
                    add("embed_images", model, ds, shard)
            add("embed_text", model, spec["corpus"], prompts)
            for method in spec.get("methods", list(methods)):
                mspec = methods[method]
                add("fit_detector", model, idset, method)
                add("score", model, idset, method)
                add("evaluate", model, idset, method)  # every ID test set in one file
                if "labels" not in mspec:
                    continue
                add("embed_class_names", model, spec["train"], prompts)
                add_label_set(model, idset, mspec["labels"])
            for clusterer, values in spec.get("cluster_sweep", {}).items():
                add("cluster_sweep", model, idset, clusterer)
                add("zero_shot_labels", model, spec["train"], spec["corpus"], prompts)
                for c in values:
                    add_clustering(model, spec["train"], clusterer, c)
        for ds in used:
            add("check_data", ds)  # a local job per dataset, precomputed ones included
            if datasets[ds]["type"] != "embeddings":
                add("index_dataset", ds)
        add("corpus_names", spec["corpus"])
    counts = Counter({rule: len(keys) for rule, keys in files.items()})
    counts.update({"preflight": 1, "tables": 1, "plots": 1, "all": 1})
    # One gallery per ID set that runs the main model (report.main_model, else the first
    # model of the main ID set).
    report, idsets = config.get("report") or {}, config["idsets"]
    main = idsets[report.get("main_idset", next(iter(idsets)))]
    model = report.get("main_model", (main.get("models") or list(models))[0])
    counts["gallery"] = sum(model in (s.get("models") or list(models)) for s in idsets.values())
    return counts
