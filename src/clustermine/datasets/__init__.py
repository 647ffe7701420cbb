"""Image datasets declared in the config: image folders, file lists and tar shards in the
webdataset layout (config/README.md).

A dataset is first turned into an *index* (relative paths, labels, class names, root), a small
TSV that the encoding shards read, so big directory trees are scanned once. The modules:

- ``imagefolder``, ``filelist``, ``webdataset``: the three source types, each read into an
  index; ``build``: the index of a declaration in the config;
- ``index``: the index itself (and seeded subsamples); ``index_file``: its TSV file;
- ``labels``: class-name files, class maps and labels; ``tar_shards``: tar-shard helpers;
- ``class_names``: whether a dataset will carry class names, asked when the Snakefile is
  parsed.

Importing this package loads neither numpy nor torch (the workflow imports it whenever the
Snakefile is parsed): the names whose modules need numpy are imported on first use.
"""

from __future__ import annotations

import importlib

from clustermine.image_files import IMAGE_EXTENSIONS

from .class_names import class_names_available
from .errors import DatasetError
from .tar_shards import (
    expand_braces,
    is_image_ext,
    sample_key,
    split_member,
    tar_names,
    tar_samples,
    tar_starts,
)

# name -> the module that defines it, imported when the name is first used
_NUMPY_MODULES = {
    "DatasetIndex": "index",
    "subsample": "index",
    "escape_path": "index_file",
    "unescape_path": "index_file",
    "read_index": "index_file",
    "write_index": "index_file",
    "index_imagefolder": "imagefolder",
    "index_filelist": "filelist",
    "index_webdataset": "webdataset",
    "build_index": "build",
}

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "class_names_available",
    "expand_braces",
    "is_image_ext",
    "sample_key",
    "split_member",
    "tar_names",
    "tar_samples",
    "tar_starts",
    *_NUMPY_MODULES,
]


def __getattr__(name: str):
    module = _NUMPY_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
