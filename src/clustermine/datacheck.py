"""The data check of each dataset: before any GPU job is queued, every dataset root, file list,
class map and tar shard the config uses exists, and the images are counted and set against the
public release's count (clustermine.public_sets) where a dataset names one; a word list's names
are counted too.

It works on directory listings (one ``scandir`` per folder; for file lists one listing per
folder they name, not one ``stat`` per file; for tar shards their headers) and never decodes
an image, so it takes seconds where indexing and encoding take hours. It reads folders, file
lists, class maps and word lists with the very functions the index and the corpus use
(clustermine.image_files, clustermine.datasets), so that it counts what they will find. Run by
the workflow's first local jobs (rule ``check_data``, one per dataset, before its index job);
the checks across a whole config (its word lists and precomputed corpora, benchmarks sharing
files with their ID sets, ``clustermine check-data``) are clustermine.preflight. Torch-free.
"""

from __future__ import annotations

import os
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from clustermine.corpus import wordlist_corpus
from clustermine.datasets import tar_names, tar_samples
from clustermine.datasets.filelist import index_filelist, read_filelist
from clustermine.datasets.imagefolder import list_class_folders
from clustermine.datasets.labels import read_class_map
from clustermine.missing_files import missing_file
from clustermine.public_sets import PUBLIC_SETS

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
        from clustermine.atomic import atomic_path

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


def missing_listed_files(root: str | os.PathLike, paths: list[str]) -> list[str]:
    """The listed relative paths that do not exist under ``root`` (or are symbolic links whose
    target does not): one listing per folder the list names, not one ``stat`` per file."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_folder[os.path.dirname(p)].append(p)
    missing = []
    for folder, members in by_folder.items():
        try:
            with os.scandir(os.path.join(root, folder)) as entries:
                present = {e.name for e in entries if not e.is_symlink() or _resolves(e)}
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        missing += [p for p in members if os.path.basename(p) not in present]
    order = {p: i for i, p in enumerate(paths)}
    return sorted(missing, key=order.__getitem__)


def _resolves(entry: os.DirEntry) -> bool:
    try:
        entry.stat()
    except OSError:
        return False
    return True


def shortened(paths: list[str], n: int = 5) -> str:
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
            _check_imagefolder(check, spec, max_missing)
        elif kind == "filelist":
            _check_filelist(check, spec, max_missing)
        elif kind == "webdataset":
            _check_webdataset(check, spec)
        elif kind == "embeddings":
            check.location = ", ".join(spec.get("paths", {}).values())
            gone = [p for p in spec.get("paths", {}).values() if not Path(p).is_file()]
            if gone:
                check.errors += [missing_file(p, "embedding file") for p in gone]
                return check
            if "models" in spec:  # image embeddings of the workflow's datasets
                _check_embedding_files(check, spec)
            return check
    except (OSError, ValueError) as err:  # ValueError: DatasetError, names not UTF-8
        check.errors.append(str(err))
    if check.found is not None and not check.errors:
        _compare(check, spec)
    return check


def _check_embedding_files(check: Check, spec: Mapping[str, Any]) -> None:
    """Every precomputed embedding file of a dataset read with the checks of the one checked
    reader, in row blocks (shape, finite rows, string datasets), and its architecture
    compared with the model the config names it for (``spec["models"]``: slug → {arch, ...},
    when the workflow gives it), so a bad file stops the run before any GPU job, not at
    scoring."""
    from clustermine.compute import DEFAULT_BUDGET_BYTES
    from clustermine.h5io import EmbeddingFileError
    from clustermine.image_rows import check_image_file

    models = spec.get("models") or {}
    for model, path in spec.get("paths", {}).items():
        try:
            # In blocks: checking a 13M-row file holds one block, not the file.
            data = check_image_file(path, DEFAULT_BUDGET_BYTES)
        except (EmbeddingFileError, OSError, KeyError) as err:
            check.errors.append(str(err) if str(path) in str(err) else f"{path}: {err}")
            continue
        check.found = (check.found or 0) + len(data)
        arch = (models.get(model) or {}).get("arch")
        recorded = data.attrs.get("model_arch")
        if arch is not None and recorded in (None, "none"):
            check.errors.append(
                f"{path}: records no model_arch, so nothing tells that model '{model}' "
                f"({arch!r}), which the config names it for, made it; write the attributes "
                "model_arch and model_pretrained into it (docs/file-formats.md)"
            )
        elif arch is not None and recorded != arch:
            check.errors.append(
                f"{path}: made by model {recorded!r}, but the config names it for model "
                f"'{model}' ({arch!r}); re-encode it with that model or fix "
                "datasets.<slug>.paths"
            )


def _check_imagefolder(check: Check, spec, max_missing: float) -> None:
    root = Path(spec["root"])
    if not root.is_dir():
        check.errors.append(f"root folder {root} does not exist" if not root.exists()
                            else f"root {root} is not a folder")  # fmt: skip
        return
    found = list_class_folders(root)  # as index_imagefolder lists it
    if not found.classes and not found.empty:
        check.errors.append(f"{root} has no class sub-folders (an image folder needs one "
                            "level of sub-folders: classes, or a single images/ folder)")
        return
    check.found = found.readable
    if check.found == 0:
        check.errors.append(f"no images under {root}")
    if found.outside:
        check.warnings.append(f"{len(found.outside):,} images directly under {root} are in no "
                              f"class folder and are left out: {shortened(found.outside)}")
    _unreadable(check, len(found.paths), found.broken, max_missing)
    class_map = spec.get("class_map")
    if class_map:
        if not Path(class_map).is_file():
            check.errors.append(f"class map {class_map} does not exist")
            return
        mapped = read_class_map(class_map)
        lacking = [f for f in found.classes if f not in mapped]
        if lacking:
            check.errors.append(f"class map {class_map} lacks {len(lacking):,} of the "
                                f"{len(found.classes):,} class folders, e.g. "
                                f"{shortened(lacking, 3)}")  # fmt: skip


def _unreadable(check: Check, total: int, broken: dict[str, str], max_missing: float) -> None:
    """Entries that cannot be read (dangling links, loops): the index keeps them and encoding
    leaves them out as unreadable; above ``max_missing`` encoding would fail."""
    if not broken:
        return
    share = len(broken) / total
    named = [f"{path} ({why})" for path, why in broken.items()]
    text = (f"{len(broken):,} of the {total:,} images cannot be read ({share:.1%}): "
            f"{shortened(named)}")  # fmt: skip
    if share > max_missing:
        check.errors.append(f"{text}; above encode.max_unreadable_fraction ({max_missing:.1%})")
    else:
        check.warnings.append(f"{text}; they will be left out as unreadable")


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
    # read and labelled as the index reads them: a malformed line is the same error here
    paths = index_filelist(list_file, root, spec.get("class_names")).paths
    check.found = len(paths)
    missing = missing_listed_files(root, paths)
    if missing:
        share = len(missing) / len(paths)
        text = (f"{len(missing):,} of the {len(paths):,} listed files are missing under "
                f"{root} ({share:.1%}): {shortened(missing)}")  # fmt: skip
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
                            f"{shortened(absent)}")  # fmt: skip
        return
    check.location = f"{root} ({len(names):,} tar shards)"
    check.found = 0
    for n in names:
        try:
            check.found += len(tar_samples(root / n, read_labels=False))
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
    try:  # read as the corpus reads it: the names it will hold
        check.found = len(wordlist_corpus(path))
    except ValueError as err:
        check.errors.append(str(err))
    check.used = check.found
    return check
