"""One message for a file that is not there, saying when the path is a symbolic link whose
target is gone or a link that loops (the path then shows in a listing, and "does not exist"
alone would puzzle whoever looks)."""

from __future__ import annotations

import errno
import os


def missing_file(path: str | os.PathLike, what: str = "file") -> str:
    """``"<path>: <what> does not exist"``, or what is wrong with the link at ``path``."""
    if not os.path.islink(path):
        return f"{path}: {what} does not exist"
    target = os.readlink(path)
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"{path}: {what} is a symbolic link loop; point the link at the {what}"
        return (
            f"{path}: {what} is a dangling symbolic link (to {target}, which does not exist); "
            f"point the link at the {what}, or replace it"
        )
    return f"{path}: {what} is a symbolic link to {target}, which is not a file"
