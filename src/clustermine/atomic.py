"""Outputs written whole or not at all: every file the workflow writes goes through
:func:`atomic_path`, so a killed job never leaves a file that looks finished, and a full disk
is one clear error naming the output (docs/file-formats.md)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from clustermine.weights.errors import error_cause

log = logging.getLogger(__name__)


class OutputDiskFull(OSError):
    """An output could not be written because its file system is full (``errno`` ENOSPC);
    the message names the output, ``path``."""

    def __init__(self, path: Path, message: str):
        super().__init__(message)
        self.errno, self.path = errno.ENOSPC, path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A killed or failing job leaves at most a ``.tmp`` file, never a file that looks finished;
    such stale temporary files of ``path`` (left by a ``kill -9``) are removed the next time
    ``path`` is written. A full disk, however the writer reports it (``OSError`` ENOSPC,
    HDF5's "errno = 28" text), is an :class:`OutputDiskFull` naming ``path``, and leaves
    nothing behind.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        # mkstemp creates 0600 files; finished outputs get the usual umask-based permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with _unraisable_disk_full() as failed_writes:
            yield tmp
        if failed_writes:  # a write that failed where it could only be printed
            raise failed_writes[0]
        os.replace(tmp, path)
    except Exception as err:
        if not is_disk_full(err):
            raise
        raise OutputDiskFull(path, _disk_full_message(path)) from error_cause(err)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _unraisable_disk_full() -> Iterator[list[BaseException]]:
    """Collect the full-disk errors raised where Python can only print them (HDF5 objects
    failing to flush when h5py frees them) instead of printing raw HDF5 text: the write
    failed, and :func:`atomic_path` says so once."""
    caught: list[BaseException] = []
    previous = sys.unraisablehook

    def hook(unraisable):
        if unraisable.exc_value is not None and is_disk_full(unraisable.exc_value):
            caught.append(unraisable.exc_value)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield caught
    finally:
        sys.unraisablehook = previous


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from, says that the disk is full: an
    ``OSError`` with errno ENOSPC, or HDF5's message (h5py raises ``OSError`` or
    ``RuntimeError`` with "errno = 28" in its text)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if f"errno = {errno.ENOSPC}," in str(err) or os.strerror(errno.ENOSPC) in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _disk_full_message(path: Path) -> str:
    folder = path.parent
    try:
        size = f" ({_human_size(shutil.disk_usage(folder).total)} in all)"
    except OSError:
        size = ""
    return (
        f"{path}: cannot write this output: no space left on device (the file system holding "
        f"{folder}{size} is full). Nothing was written: the partial file was removed. Free "
        "space there, or put the results on a larger disk, and run again."
    )


def _human_size(num_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if num_bytes < 1024:
            return f"{num_bytes:.0f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:,.1f} TiB"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_path` left beside ``path``
    (``.<name>.<8 random characters>.tmp``, as ``tempfile.mkstemp`` names them). Only one job
    writes a given output at a time (Snakemake's locking), so any such file is stale."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    stale = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    for p in stale:
        log.warning("removing %s, a temporary file left by an interrupted write of %s", p, path)
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale
