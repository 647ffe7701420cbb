"""The weight cache: where a tag's fetched files lie (open_clip's and huggingface_hub's
layout), placing a file obtained elsewhere there, and the marker files the workflow keeps of
fetched weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from clustermine.weights.errors import WeightsError
from clustermine.weights.sources import WeightSource, weight_source

DEFAULT_CACHE = "resources/weights"


def _hub_cache_file(repo_id: str, filename: str, cache_dir: str | os.PathLike) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir))
    return Path(found) if isinstance(found, str) else None


def cached_weights(source: WeightSource, cache_dir: str | os.PathLike) -> Path | None:
    """The cached weight file of ``source`` in ``cache_dir``, or None; never goes online."""
    if source.repo_id:
        for filename in source.filenames:
            found = _hub_cache_file(source.repo_id, filename, cache_dir)
            if found is not None:
                return found
        return None
    path = Path(str(source.url))
    if path.is_absolute():  # a tag registered with a local file
        return path if path.is_file() else None
    path = Path(cache_dir) / os.path.basename(str(source.url))
    return path if path.is_file() else None


def place_in_cache(file: str | os.PathLike, arch: str, tag: str,
                   cache_dir: str | os.PathLike) -> Path:
    """Copy a weight file obtained elsewhere (downloaded on another machine) to where
    :func:`cached_weights` and open_clip look for ``arch`` + ``tag`` in ``cache_dir``."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"weights file {file} does not exist")
    source = weight_source(arch, tag)
    cache = Path(cache_dir)
    if source.repo_id:
        # huggingface_hub's layout: refs/main names a snapshot holding the repository's files.
        repo = cache / ("models--" + source.repo_id.replace("/", "--"))
        ref = repo / "refs" / "main"
        if ref.is_file():
            commit = ref.read_text().strip()
        else:
            commit = hashlib.sha1(f"{source.repo_id}:{tag}".encode()).hexdigest()
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        safe = file.suffix == ".safetensors"
        names = [n for n in source.filenames if n.endswith(".safetensors") == safe]
        if not names:
            raise WeightsError(
                f"{file}: {arch} ({tag}) is published as {' or '.join(source.filenames)}; "
                f"give a file of that format, not {file.suffix or 'one without a suffix'}"
            )
        target = repo / "snapshots" / commit / names[0]
    else:
        target = cache / os.path.basename(str(source.url))
    from clustermine.atomic import atomic_path

    with atomic_path(target) as tmp:
        shutil.copyfile(file, tmp)
    return target


# --- marker files of the workflow ------------------------------------------------------------


def marker_record(arch: str, tag: str, cache_dir: str | os.PathLike,
                  weights_file: str | os.PathLike) -> dict[str, Any]:
    """What the marker of fetched weights records (no time stamps: rewriting it with the same
    weights gives the same bytes, which Snakemake's input checksums see)."""
    path = Path(weights_file)
    try:
        rel = str(path.relative_to(Path(cache_dir)))
    except ValueError:
        rel = str(path)
    return {
        "arch": arch,
        "pretrained": tag,
        "cache": str(cache_dir),
        "file": rel,
        "bytes": path.stat().st_size,
        "source": _source_of(weight_source(arch, tag), path),
    }


def _source_of(source: WeightSource, path: Path) -> str:
    """Where the cached file came from: its repository and file name, or its URL."""
    return f"hf-hub:{source.repo_id}/{path.name}" if source.repo_id else str(source.url)


def write_marker(path: str | os.PathLike, record: dict[str, Any]) -> None:
    from clustermine.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_marker(path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
