"""Writing what the deploy commands make (a bundle, a file of rows) with one clear error: a
file that cannot be written, on a full disk or in a folder without permission, is named with
the cause. The writers write to a temporary file or folder first, so nothing partial stays.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from clustermine.atomic import is_disk_full, OutputDiskFull
from clustermine.weights import error_cause


class WriteError(RuntimeError):
    """A result that could not be written; nothing of it was left behind."""


@contextlib.contextmanager
def writing(path: str | os.PathLike):
    """Turn a failed write into a :class:`WriteError` naming ``path`` (the file as its writer
    means it, not a temporary one) and the cause: an ``OSError``, or a full disk however the
    writer reports it (safetensors' and HDF5's errors carry the system's text)."""
    try:
        yield
    except OutputDiskFull as err:  # atomic_path's own error, which names the file already
        raise WriteError(str(err)) from error_cause(err)
    except Exception as err:
        if isinstance(err, OSError) and err.errno not in (None, errno.ENOSPC):
            cause, todo = os.strerror(err.errno), "write elsewhere"
        elif is_disk_full(err):
            cause, todo = os.strerror(errno.ENOSPC), "free space there or write elsewhere"
        else:
            raise
        raise WriteError(
            f"{Path(path)}: cannot write it: {cause}; nothing was written ({todo})"
        ) from error_cause(err)
