"""Shared fixtures: tiny image folders, a tiny config, and Snakemake runs through its API."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"

TINY_WORDS = [
    "dog", "cat", "car", "tree", "house", "boat", "shirt", "shoe", "bag", "apple", "banana",
    "bird", "fish", "horse", "chair", "table", "lamp", "clock", "flower", "mountain", "river",
    "bread", "cake", "guitar", "piano", "train", "plane", "bicycle", "hat", "coat",
]


def make_image_folder(root: Path, classes: dict[str, int], seed: int, size: int = 20) -> Path:
    """Class sub-folders of small random PNGs, each class with its own mean colour."""
    rng = np.random.default_rng(seed)
    for c, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, size=3)
        for i in range(count):
            pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def planted_clusters(n=600, c=10, d=64, noise=0.05, seed=0):
    """Well-separated clusters on the unit sphere, rows rescaled (cosine ignores the norm)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(c, size=n)
    x = centres[y] + rng.normal(scale=noise, size=(n, d))
    return (x * rng.uniform(0.5, 2.0, size=(n, 1))).astype(np.float32), y


def tiny_config(data: Path, models: dict | None = None) -> dict:
    return {
        "seed": 0,
        "models": models or {"tiny-a": {"arch": "clustermine-tiny", "pretrained": None,
                                        "batch_size": 8}},
        "datasets": {
            "id-train": {"type": "imagefolder", "root": str(data / "id-train")},
            "id-test": {"type": "imagefolder", "root": str(data / "id-test"), "shards": 2},
            "ood": {"type": "imagefolder", "root": str(data / "ood")},
        },
        "corpora": {"words": {"type": "wordlist", "path": str(data / "words.txt"),
                              "add_class_names_of": ["id-train"]}},
        "prompts": ["simple"],
        "encode": {"num_workers": 0, "max_unreadable_fraction": 0.2},
        "idsets": {"tiny": {"train": "id-train", "test": ["id-test"], "corpus": "words",
                            "prompts": "simple", "benchmarks": ["ood"]}},
    }


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    """A work directory with tiny image folders, a word list and ``config.yaml``."""
    data = tmp_path / "data"
    make_image_folder(data / "id-train", {"dog": 12, "cat": 12, "car": 12}, seed=1)
    make_image_folder(data / "id-test", {"dog": 5, "cat": 5, "car": 5}, seed=2)
    make_image_folder(data / "ood", {"tree": 6, "boat": 6}, seed=3)
    (data / "id-test" / "cat" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    (data / "words.txt").write_text("\n".join(TINY_WORDS) + "\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(data)))
    return tmp_path


def run_workflow(workdir: Path, targets: list[str] | None = None, cores: int = 2,
                 configfile: str = "config.yaml", dryrun: bool = False, forceall=False):
    """Run the project's Snakefile in ``workdir`` through Snakemake's Python API."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={Quietness.PROGRESS}, show_failed_logs=True)) as api:
        workflow_api = api.workflow(
            # No GPU here: GPU-tagged jobs may run side by side on the cores (as `make demo`).
            resource_settings=ResourceSettings(cores=cores, resources={"gpu": cores}),
            config_settings=ConfigSettings(configfiles=[workdir / configfile]),
            snakefile=SNAKEFILE,
            workdir=workdir,
        )
        dag_api = workflow_api.dag(
            dag_settings=DAGSettings(targets=set(targets or []), forceall=forceall)
        )
        if dryrun:
            dag_api.execute_workflow(executor="dryrun")
        else:
            dag_api.execute_workflow(
                executor="local", execution_settings=ExecutionSettings(lock=False)
            )


def file_times(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and ".snakemake" not in p.parts
    }


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


__all__ = ["make_image_folder", "tiny_config", "run_workflow", "file_times", "shutil"]
