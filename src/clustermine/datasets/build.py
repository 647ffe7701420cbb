"""A dataset's index from its declaration in the config."""

from __future__ import annotations

from typing import Any, Mapping

from .errors import DatasetError
from .filelist import index_filelist
from .imagefolder import index_imagefolder
from .index import DatasetIndex, subsample
from .webdataset import index_webdataset


def build_index(spec: Mapping[str, Any], seed: int = 0) -> DatasetIndex:
    kind = spec.get("type")
    if kind == "imagefolder":
        index = index_imagefolder(spec["root"], spec.get("class_map"))
    elif kind == "filelist":
        index = index_filelist(spec["list"], spec["root"], spec.get("class_names"))
    elif kind == "webdataset":
        index = index_webdataset(spec["root"], spec["tars"], spec.get("class_names"))
    else:
        raise DatasetError(
            f"cannot index dataset type {kind!r} (imagefolder, filelist or webdataset)"
        )
    index.params = {"type": kind, **{k: v for k, v in spec.items() if k != "type"}}
    return subsample(index, spec.get("limit"), spec.get("seed", seed))
