"""The pre-flight data check: before any GPU job is queued, every dataset root, file list,
class map, tar shard and word list the config uses exists, and the images are counted and set
against the public release's count (clustermine.public_sets) where a dataset names one.

It works on directory listings (one ``scandir`` per folder; for file lists one listing per
folder they name, not one ``stat`` per file; for tar shards their headers) and never decodes
an image, so it takes seconds where indexing and encoding take hours. Run by the workflow's
first local jobs (rule ``check_data``, one per dataset, before its index job) and, for a whole
config with its word lists, by ``clustermine check-data``. Torch-free.
"""

from __future__ import annotations

import os
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from clustermine.datasets import IMAGE_EXTENSIONS, DatasetError, is_image_ext, sample_key, tar_names
from clustermine.public_sets import PUBLIC_SETS

# Keys of a dataset's declaration that do not change which files it has.
NOT_CHECKED = ("shards",)


class DataCheckFailed(RuntimeError):
    """A dataset or word list the config uses is missing or incomplete."""


@dataclass
class Check:
    """The result for one dataset or word list."""

    name: str
    kind: str
    location: str
    found: int | None = None  # images (lines of a word list) found
    used: int | None = None  # after `limit`
    expected: int | None = None  # the public release's count
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "ERROR" if self.errors else "warning" if self.warnings else "ok"


@dataclass
class DataCheck:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not any(c.errors for c in self.checks)

    def rows(self) -> list[list[str]]:
        def num(n):
            return "" if n is None else f"{n:,}"

        return [[c.name, c.kind, c.location, num(c.found), num(c.used), num(c.expected),
                 c.status, " ".join(c.errors + c.warnings)] for c in self.checks]  # fmt: skip

    HEADER = ["dataset", "type", "location", "found", "used", "expected", "status", "notes"]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                  for row in self.rows()]  # fmt: skip
        return "\n".join(lines) + "\n"

    def tsv(self) -> str:
        clean = [[c.replace("\t", " ").replace("\n", " ") for c in row] for row in self.rows()]
        return "\n".join("\t".join(row) for row in [self.HEADER, *clean]) + "\n"

    def write_tsv(self, path: str | os.PathLike) -> None:
        from clustermine.h5io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(self.tsv(), encoding="utf-8")

    def problems(self) -> str:
        lines = [f"  {c.name}: {e}" for c in self.checks for e in c.errors]
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        if not self.ok:
            n = sum(1 for c in self.checks if c.errors)
            raise DataCheckFailed(
                f"data check: {n} of {len(self.checks)} datasets and word lists cannot be "
                f"used as configured:\n{self.problems()}\nFix the paths in the config (or "
                "data_root), or take the datasets out of it; the table above lists every "
                "dataset."
            )


# --- listing helpers ---------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def count_images(folder: str | os.PathLike) -> int:
    """Image files under ``folder`` (recursively), from directory listings only."""
    total, pending = 0, [os.fspath(folder)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    pending.append(entry.path)
                elif _is_image(entry.name):
                    total += 1
    return total


def missing_listed_files(root: str | os.PathLike, paths: list[str]) -> list[str]:
    """The listed relative paths that do not exist under ``root``: one listing per folder the
    list names, not one ``stat`` per file."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_folder[os.path.dirname(p)].append(p)
    missing = []
    for folder, members in by_folder.items():
        try:
            with os.scandir(os.path.join(root, folder)) as entries:
                present = {e.name for e in entries}
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        missing += [p for p in members if os.path.basename(p) not in present]
    order = {p: i for i, p in enumerate(paths)}
    return sorted(missing, key=order.__getitem__)


def _list_paths(list_file: Path) -> list[str]:
    paths = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            paths.append(line.split()[0])
    return paths


def _count_tar_images(path: Path) -> int:
    count, keys = 0, set()
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            key, ext = sample_key(member.name)
            if member.isfile() and is_image_ext(ext) and key not in keys:
                keys.add(key)
                count += 1
    return count


def _short(paths: list[str], n: int = 5) -> str:
    more = f" and {len(paths) - n:,} more" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


# --- one dataset ------------------------------------------------------------------------------


def check_dataset(name: str, spec: Mapping[str, Any], max_missing: float = 0.01) -> Check:
    """Check one dataset declaration (paths already joined to data_root). ``max_missing``:
    the share of listed files that may be absent (``encode.max_unreadable_fraction``: they
    would be left out as unreadable), above which it is an error."""
    kind = spec["type"]
    check = Check(name, kind, str(spec.get("root") or spec.get("list") or ""))
    if spec.get("public"):
        check.expected = PUBLIC_SETS[spec["public"]].images
    for required in spec.get("requires", []):
        if not Path(required).exists():
            check.errors.append(f"required file {required} does not exist")
    try:
        if kind == "imagefolder":
            _check_imagefolder(check, spec)
        elif kind == "filelist":
            _check_filelist(check, spec, max_missing)
        elif kind == "webdataset":
            _check_webdataset(check, spec)
        elif kind == "embeddings":
            check.location = ", ".join(spec.get("paths", {}).values())
            gone = [p for p in spec.get("paths", {}).values() if not Path(p).is_file()]
            if gone:
                check.errors.append(f"embedding files missing: {_short(gone)}")
            return check
    except (OSError, DatasetError) as err:
        check.errors.append(str(err))
    if check.found is not None and not check.errors:
        _compare(check, spec)
    return check


def _check_imagefolder(check: Check, spec) -> None:
    root = Path(spec["root"])
    if not root.is_dir():
        check.errors.append(f"root folder {root} does not exist" if not root.exists()
                            else f"root {root} is not a folder")  # fmt: skip
        return
    with os.scandir(root) as entries:
        folders = sorted(e.name for e in entries if e.is_dir())
    if not folders:
        check.errors.append(f"{root} has no class sub-folders (an image folder needs one "
                            "level of sub-folders: classes, or a single images/ folder)")
        return
    check.found = sum(count_images(root / f) for f in folders)
    if check.found == 0:
        check.errors.append(f"no images under {root}")
    class_map = spec.get("class_map")
    if class_map:
        if not Path(class_map).is_file():
            check.errors.append(f"class map {class_map} does not exist")
            return
        lines = Path(class_map).read_text(encoding="utf-8").splitlines()
        mapped = {ln.split(None, 1)[0] for ln in lines if ln.strip() and not ln.startswith("#")}
        lacking = [f for f in folders if f not in mapped]
        if lacking:
            check.errors.append(f"class map {class_map} lacks {len(lacking):,} of the "
                                f"{len(folders):,} class folders, e.g. {_short(lacking, 3)}")


def _check_filelist(check: Check, spec, max_missing: float) -> None:
    root, list_file = Path(spec["root"]), Path(spec["list"])
    check.location = f"{root} ({list_file.name})"
    if not list_file.is_file():
        check.errors.append(f"file list {list_file} does not exist")
    if not root.is_dir():
        check.errors.append(f"root folder {root} does not exist")
    if spec.get("class_names") and not Path(spec["class_names"]).is_file():
        check.errors.append(f"class-name file {spec['class_names']} does not exist")
    if check.errors:
        return
    paths = _list_paths(list_file)
    check.found = len(paths)
    if not paths:
        check.errors.append(f"file list {list_file} lists no images")
        return
    missing = missing_listed_files(root, paths)
    if missing:
        share = len(missing) / len(paths)
        text = (f"{len(missing):,} of the {len(paths):,} listed files are missing under "
                f"{root} ({share:.1%}): {_short(missing)}")  # fmt: skip
        if share > max_missing:
            check.errors.append(f"{text}; above encode.max_unreadable_fraction "
                                f"({max_missing:.1%})")  # fmt: skip
        else:
            check.warnings.append(f"{text}; they will be left out as unreadable")
    check.found = len(paths) - len(missing)


def _check_webdataset(check: Check, spec) -> None:
    root = Path(spec["root"])
    if not root.is_dir():
        check.errors.append(f"root folder {root} does not exist")
        return
    names = tar_names(root, spec["tars"])
    if not names:
        check.errors.append(f"no tar shards match {spec['tars']!r} under {root}")
        return
    absent = [n for n in names if not (root / n).is_file()]
    if absent:
        check.errors.append(f"{len(absent):,} of {len(names):,} tar shards are missing: "
                            f"{_short(absent)}")  # fmt: skip
        return
    check.location = f"{root} ({len(names):,} tar shards)"
    check.found = 0
    for n in names:
        try:
            check.found += _count_tar_images(root / n)
        except tarfile.TarError as err:
            check.errors.append(f"tar shard {root / n} is not a readable tar file ({err})")


def _compare(check: Check, spec) -> None:
    limit = spec.get("limit")
    check.used = min(check.found, limit) if limit else check.found
    if limit and check.found < limit:
        check.warnings.append(f"limit {limit:,} but only {check.found:,} images")
    public = spec.get("public")
    if public:
        ref = PUBLIC_SETS[public]
        if check.found != ref.images:
            check.warnings.append(
                f"found {check.found:,} images, the public release '{public}' has "
                f"{ref.images:,} ({ref.source})"
            )


def check_wordlist(name: str, spec: Mapping[str, Any]) -> Check:
    check = Check(name, "wordlist", str(spec.get("path", "")))
    path = Path(spec["path"])
    if not path.is_file():
        check.errors.append(f"word list {path} does not exist")
        return check
    with open(path, encoding="utf-8", errors="replace") as f:
        check.found = sum(1 for line in f if line.strip())
    check.used = check.found
    if not check.found:
        check.errors.append(f"word list {path} is empty")
    return check


# --- the whole config ---------------------------------------------------------------------------


def checked_specs(cfg) -> tuple[dict[str, dict], dict[str, dict]]:
    """The declarations the check reads, from a :class:`clustermine.config.WorkflowConfig`:
    the datasets the config uses (without settings that do not change their files) and its
    word-list and precomputed corpora."""
    datasets = {
        ds: {k: v for k, v in cfg.datasets[ds].items() if k not in NOT_CHECKED}
        for ds in cfg.used_datasets()
    }
    used = {spec["corpus"] for spec in cfg.idsets.values()} if cfg.idsets else set(cfg.corpora)
    corpora = {c: dict(cfg.corpora[c]) for c in sorted(used)
               if cfg.corpora[c]["type"] in ("wordlist", "embeddings")}  # fmt: skip
    return datasets, corpora


def check_data(
    datasets: Mapping[str, Mapping[str, Any]],
    corpora: Mapping[str, Mapping[str, Any]] | None = None,
    max_missing: float = 0.01,
) -> DataCheck:
    checks = [check_dataset(name, spec, max_missing) for name, spec in datasets.items()]
    for name, spec in (corpora or {}).items():
        if spec["type"] == "wordlist":
            checks.append(check_wordlist(name, spec))
        else:
            check = check_dataset(name, {**spec, "type": "embeddings"})
            check.kind = "corpus embeddings"
            checks.append(check)
    return DataCheck(checks)
