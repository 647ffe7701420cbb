"""Helpers shared by the tests (and the DAG benchmark): tiny data, tiny configs, Snakemake runs
through its public API and dry runs through its command line."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY_WORDS = [
    "dog", "cat", "car", "tree", "house", "boat", "shirt", "shoe", "bag", "apple", "banana",
    "bird", "fish", "horse", "chair", "table", "lamp", "clock", "flower", "mountain", "river",
    "bread", "cake", "guitar", "piano", "train", "plane", "bicycle", "hat", "coat",
]  # fmt: skip


def make_image_folder(root: Path, classes: dict[str, int], seed: int, size: int = 20) -> Path:
    """Class sub-folders of small random PNGs, each class with its own mean colour."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
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


def clip_like_concepts(n=10000, concepts=100, submodes=4, d=384, gap=1.0, spread=0.5,
                       noise=0.04, seed=0):
    """Embeddings around planted concepts, shaped like a CLIP image tower's: every concept has
    ``submodes`` sub-modes (directions ``spread`` away from it), every row shares one strong
    direction (the modality gap: rows of different concepts have cosine about
    gap² / (1 + gap²), 0.5 by default) and rows have random norms. Returns (x, concept)."""
    rng = np.random.default_rng(seed)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    centres = unit(rng.normal(size=(concepts, d)))
    modes = unit(centres[:, None] + spread * unit(rng.normal(size=(concepts, submodes, d))))
    y = rng.integers(concepts, size=n)
    mode = rng.integers(submodes, size=n)
    x = unit(modes[y, mode] + noise * rng.normal(size=(n, d))) + gap * unit(rng.normal(size=d))
    return (x * rng.uniform(2.0, 5.0, size=(n, 1))).astype(np.float32), y


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


def make_tiny_project(root: Path) -> Path:
    """Tiny image folders (one corrupt image), a word list and ``config.yaml`` under ``root``."""
    data = root / "data"
    make_image_folder(data / "id-train", {"dog": 12, "cat": 12, "car": 12}, seed=1)
    make_image_folder(data / "id-test", {"dog": 5, "cat": 5, "car": 5}, seed=2)
    make_image_folder(data / "ood", {"tree": 6, "boat": 6}, seed=3)
    (data / "id-test" / "cat" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    (data / "words.txt").write_text("\n".join(TINY_WORDS) + "\n")
    write_config(root, tiny_config(data))
    return root


def run_main(capsys, *args) -> tuple[int, str, str]:
    """The ``clustermine`` command's ``main`` in this process (the model is built again, but
    torch is not imported again): exit status, stdout, stderr."""
    from clustermine.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_config(project: Path, name: str = "config.yaml") -> dict:
    return yaml.safe_load((project / name).read_text())


def write_config(project: Path, config: dict, name: str = "config.yaml") -> Path:
    (project / name).write_text(yaml.safe_dump(config))
    return project / name


def run_workflow(workdir: Path, targets: list[str] | None = None, cores: int = 2,
                 configfile: str = "config.yaml", dryrun: bool = False, forceall=False):
    """Run the project's Snakefile in ``workdir`` through Snakemake's Python API."""
    import importlib

    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
    )

    # Local rules run their scripts from this process, writing to the sys.stdout Snakemake saw
    # when first imported: under pytest that may be an earlier test's closed capture stream.
    # None: the process's own standard output.
    importlib.import_module("snakemake.shell").STDOUT = None  # the module, not its class
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


def snakemake(workdir: Path, *args: str, configfiles=("config.yaml",), check=False, env=None):
    """``python -m snakemake -s <project Snakefile> --configfile ... args`` in ``workdir``."""
    cmd = [*SNAKEMAKE, "-s", str(SNAKEFILE)]
    for configfile in configfiles or ():
        cmd += ["--configfile", str(configfile)]
    out = subprocess.run([*cmd, *args], cwd=workdir, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-3000:]}"
                             f"\n{out.stderr[-3000:]}")
    return out


def planned_jobs(workdir: Path, *args: str, configfiles=("config.yaml",)) -> Counter:
    """Jobs per rule a run would execute now, from the job table of a dry run."""
    out = snakemake(workdir, "-n", "--quiet", "rules", "--cores", "1", *args,
                    configfiles=configfiles, check=True)
    return parse_job_table(out.stdout + out.stderr)


def parse_job_table(text: str) -> Counter:
    """The ``Job stats`` table Snakemake prints, as a Counter (empty: nothing to be done)."""
    lines = text.splitlines()
    if "Job stats:" not in lines:
        if "Nothing to be done" in text:
            return Counter()
        raise AssertionError(f"no job table in the dry run's output:\n{text[-3000:]}")
    start = lines.index("Job stats:") + 3  # the title, the header and the rule line
    counts = Counter()
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def file_times(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and ".snakemake" not in p.parts
    }
