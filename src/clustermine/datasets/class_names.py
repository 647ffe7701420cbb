"""Whether a declared dataset will carry class names, told cheaply when the workflow parses its
config. Imports neither numpy nor torch (the Snakefile imports this whenever it is parsed)."""

from __future__ import annotations

import os
import re
import tarfile
from typing import Any, Mapping

from .errors import DatasetError
from .tar_shards import sample_key, tar_names


def class_names_available(spec: Mapping[str, Any]) -> bool | None:
    """Whether a declared dataset will carry class names, cheaply (the workflow asks this when
    it parses the config): None when that cannot be told without the data (a file list or
    precomputed file not there yet). Image folders always name their classes; a file list
    does with a class-name file or name labels (its first entry is looked at); a precomputed
    embedding file does when it holds ``class_names``."""
    kind = spec.get("type")
    if kind == "imagefolder":
        return True
    if kind == "filelist":
        if spec.get("class_names"):
            return True
        try:
            with open(spec["list"], encoding="utf-8-sig") as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        # as clustermine.datasets.filelist.split_entry splits it
                        parts = line.split("\t") if "\t" in line else line.split()
                        label = parts[1].strip() if len(parts) > 1 else ""
                        return bool(label) and not re.fullmatch(r"-?[0-9]+", label)
        except (OSError, UnicodeDecodeError):
            return None  # the data check names the problem
        return None
    if kind == "webdataset":
        if spec.get("class_names"):
            return True
        try:  # the first sample of the first tar shard tells (a few header reads)
            first = tar_names(spec["root"], spec["tars"])[0]
            exts, first_key = set(), None
            with tarfile.open(os.path.join(spec["root"], first), "r:") as tar:
                for member in tar:
                    key, ext = sample_key(member.name)
                    if first_key is not None and key != first_key:
                        break
                    first_key = key
                    exts.add(ext)
            return "txt" in exts
        except (OSError, tarfile.TarError, DatasetError, IndexError):
            return None
    if kind == "embeddings":
        import h5py

        found = []
        for path in spec.get("paths", {}).values():
            try:
                with h5py.File(path, "r") as f:
                    found.append("class_names" in f)
            except OSError:
                return None
        return all(found) if found else None
    return None
