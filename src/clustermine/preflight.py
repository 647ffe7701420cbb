"""The pre-flight checks across a whole config, on top of each dataset's own check
(clustermine.datacheck): the datasets and corpora a config uses, its word lists and precomputed
corpora, and OOD benchmarks that share image files with their ID sets. Run by the workflow's
``preflight`` rule once every dataset's check has passed, and by ``clustermine check-data``.
Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from clustermine.datacheck import (
    Check,
    DataCheck,
    DataCheckFailed,
    check_dataset,
    check_wordlist,
    shortened,
)
from clustermine.datasets import tar_names, tar_samples
from clustermine.datasets.filelist import read_filelist
from clustermine.datasets.imagefolder import list_class_folders

# Keys of a dataset's declaration that do not change which files it has.
NOT_CHECKED = ("shards",)


def checked_specs(cfg) -> tuple[dict[str, dict], dict[str, dict]]:
    """The declarations the check reads, from a :class:`clustermine.config.WorkflowConfig`:
    the datasets the config uses (without settings that do not change their files) and its
    word-list and precomputed corpora."""
    datasets = {
        ds: {k: v for k, v in cfg.datasets[ds].items() if k not in NOT_CHECKED}
        for ds in cfg.used_datasets()
    }
    for spec in datasets.values():
        if spec["type"] == "embeddings":  # checked against the models they are named for
            spec["models"] = {m: {"arch": cfg.models[m]["arch"]} for m in spec.get("paths", {})}
    used = {spec["corpus"] for spec in cfg.idsets.values()} if cfg.idsets else set(cfg.corpora)
    corpora = {c: dict(cfg.corpora[c]) for c in sorted(used)
               if cfg.corpora[c]["type"] in ("wordlist", "embeddings")}  # fmt: skip
    return datasets, corpora


def check_data(
    datasets: Mapping[str, Mapping[str, Any]],
    corpora: Mapping[str, Mapping[str, Any]] | None = None,
    max_missing: float = 0.01,
    idsets: Mapping[str, Mapping[str, Any]] | None = None,
) -> DataCheck:
    """Check datasets and word lists; with the config's ``idsets``, warn about benchmarks that
    share files with their ID sets (:func:`shared_file_warnings`)."""
    checks = [check_dataset(name, spec, max_missing) for name, spec in datasets.items()]
    if idsets:
        usable = {c.name: datasets[c.name] for c in checks if not c.errors}
        listed: dict[str, dict[str, str]] = {}  # each dataset is listed once
        for check in checks:
            check.warnings += shared_file_warnings(check.name, usable, idsets, listed)
    checks += [_check_corpus(name, spec) for name, spec in (corpora or {}).items()]
    return DataCheck(checks)


def preflight_check(
    datasets: Mapping[str, Mapping[str, Any]],
    corpora: Mapping[str, Mapping[str, Any]],
    idsets: Mapping[str, Mapping[str, Any]],
) -> DataCheck:
    """What the workflow checks once every dataset's own check has passed (rule
    ``preflight``): benchmarks sharing files with their ID sets (a row of warnings per such
    benchmark) and the word lists and precomputed corpora. ``datasets`` and ``corpora`` are
    :func:`checked_specs`."""
    listed: dict[str, dict[str, str]] = {}  # each dataset is listed once
    checks = []
    for name, spec in datasets.items():
        warnings = shared_file_warnings(name, datasets, idsets, listed)
        if warnings:
            checks.append(Check(name, "shared files", str(spec.get("root", "")),
                                warnings=warnings))
    return DataCheck(checks + [_check_corpus(name, spec) for name, spec in corpora.items()])


def _check_corpus(name: str, spec: Mapping[str, Any]) -> Check:
    if spec["type"] == "wordlist":
        return check_wordlist(name, spec)
    check = check_dataset(name, {**spec, "type": "embeddings"})
    check.kind = "corpus embeddings"
    return check


def merged_tables(tables: Sequence[str | os.PathLike], extra: DataCheck) -> str:
    """One table from the TSV tables of the per-dataset checks and the rows of ``extra``."""
    rows = []
    for table in tables:
        try:
            lines = Path(table).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            lines = []
        if not lines or lines[0].split("\t") != DataCheck.HEADER:
            raise DataCheckFailed(f"{table}: not a data-check table; delete it and rerun")
        rows += lines[1:]
    own = extra.tsv().splitlines()[1:]
    return "\n".join(["\t".join(DataCheck.HEADER), *rows, *own]) + "\n"


# --- benchmarks that share files with their ID sets ------------------------------------------


def shared_file_warnings(
    benchmark: str,
    datasets: Mapping[str, Mapping[str, Any]],
    idsets: Mapping[str, Mapping[str, Any]],
    listed: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """One warning per ID set that has ``benchmark`` as an OOD benchmark and whose train,
    test or calibration sets hold some of the same files: a benchmark made of ID test images
    scores AUROC 50 without a word. Files are the same when their paths are, after the
    datasets' roots are resolved (symbolic links followed); datasets not in ``datasets``
    (precomputed embeddings, datasets with errors) are not compared. Image folders and file
    lists are listed again, tar shards read again (headers only); ``listed`` keeps the
    :func:`dataset_files` of each dataset across calls."""
    if benchmark not in datasets:
        return []
    listed = {} if listed is None else listed

    def files(name: str) -> dict[str, str]:
        if name not in listed:
            listed[name] = dataset_files(datasets[name]) if name in datasets else {}
        return listed[name]

    warnings = []
    for idset, spec in idsets.items():
        if benchmark not in [*(spec.get("benchmarks") or []),
                             *(spec.get("extra_benchmarks") or [])]:  # fmt: skip
            continue
        roles = [("test", t) for t in spec.get("test") or []]
        if spec.get("calibration") and spec["calibration"] not in (spec.get("test") or []):
            roles.append(("calibration", spec["calibration"]))
        if spec.get("train"):
            roles.append(("train", spec["train"]))
        ours = files(benchmark)
        shared: set[str] = set()
        parts = []
        for role, name in roles:
            if name == benchmark:
                continue
            common = ours.keys() & files(name).keys()
            if common:
                parts.append(f"{len(common):,} with its {role} set {name}")
                shared |= common
        if shared:
            examples = sorted(ours[key] for key in shared)
            warnings.append(
                f"shares {len(shared):,} of its {len(ours):,} files with the ID sets of "
                f"{idset}: {', '.join(parts)} (e.g. {shortened(examples, 3)}); images that are "
                "both ID and OOD make its scores meaningless (AUROC near 50 on the same "
                "images): take them out of one of the sets"
            )
    return warnings


def dataset_files(spec: Mapping[str, Any]) -> dict[str, str]:
    """The files of a dataset (every one, before ``limit``), as {resolved path: the path as
    the dataset names it}: the root resolved (symbolic links followed) and joined to each
    relative path; tar members as ``<resolved tar>/<member>``."""
    kind = spec["type"]
    if kind == "imagefolder":
        root, paths = spec["root"], list_class_folders(spec["root"]).paths
    elif kind == "filelist":
        root, paths = spec["root"], read_filelist(spec["list"]).paths
    elif kind == "webdataset":
        root = spec["root"]
        paths = [
            f"{tar}/{member}"
            for tar in tar_names(root, spec["tars"])
            for member, _ in tar_samples(os.path.join(root, tar), read_labels=False)
        ]
    else:
        return {}
    real = os.path.realpath(root)
    return {os.path.normpath(os.path.join(real, p)): p for p in paths}
