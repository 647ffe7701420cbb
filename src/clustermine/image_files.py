"""Which image files a folder holds: the one listing that the data check, the dataset index and
``clustermine score`` share, so that they always count the same files (config/README.md,
"Image folders and symbolic links").

- Every file below the folder, at any depth, whose name ends in an image suffix
  (:data:`IMAGE_EXTENSIONS`, any case), sorted by path, folder by folder.
- Symbolic links are followed, to files and to folders. A link to a folder that holds the link
  (a loop) is not followed again.
- Nothing is dropped without a word: a link whose target does not exist (dangling), a link
  that leads back to itself or to a folder above it (a loop) and a sub-folder that cannot be
  listed are entries of their own, *broken*, with the reason. Indexing keeps them, so that
  encoding counts them as unreadable images; the data check names them; ``clustermine score``
  gives each a row with the error. A broken link named like another kind of file
  (``notes.txt``) is left out as that file would be.
- File names must be valid UTF-8, as the index and the embedding files store them: a name
  that is not (Latin-1 bytes such as ``caf\\xe9.png``) is an error that names it.

Torch- and numpy-free.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Iterable

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


class UnusableFileName(ValueError):
    """A file name that cannot be stored in the index or an embedding file."""


@dataclass
class ImageFiles:
    """The image files below a folder, relative to it: ``paths`` holds every entry in order,
    the readable files and the broken ones; ``broken`` says why each broken one cannot be
    read."""

    paths: list[str]
    broken: dict[str, str] = field(default_factory=dict)

    @property
    def readable(self) -> int:
        return len(self.paths) - len(self.broken)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def path_order(path: str) -> list[str]:
    """Sort key of a relative path: folder by folder, as ``pathlib`` sorts paths."""
    return path.split("/")


def list_image_files(folder: str | os.PathLike, skip_hidden: bool = False) -> ImageFiles:
    """The image files below ``folder``, following symbolic links (module docstring);
    ``skip_hidden`` leaves out files and folders whose name starts with a dot.

    Raises :class:`OSError` when ``folder`` itself cannot be listed and
    :class:`UnusableFileName` when a name is not valid UTF-8.
    """
    top = os.fspath(folder)
    start = os.stat(top)
    paths: list[str] = []
    broken: dict[str, str] = {}
    # (relative path, path, (device, inode) of every folder from `top` down to it)
    pending = [("", top, ((start.st_dev, start.st_ino),))]
    while pending:
        rel, path, above = pending.pop()
        try:
            with os.scandir(path) as listing:
                entries = list(listing)
        except OSError as err:
            if not rel:
                raise
            broken[rel] = f"the folder cannot be listed ({err.strerror})"
            continue
        for entry in entries:
            if skip_hidden and entry.name.startswith("."):
                continue
            sub = f"{rel}/{entry.name}" if rel else entry.name
            try:
                info = entry.stat(follow_symlinks=True) if entry.is_symlink() else None
            except OSError:
                if is_image_name(entry.name) or not os.path.splitext(entry.name)[1]:
                    broken[sub] = link_problem(entry.path) or "symbolic link cannot be followed"
                continue
            is_dir = stat.S_ISDIR(info.st_mode) if info else entry.is_dir(follow_symlinks=False)
            if is_dir:
                info = info or entry.stat(follow_symlinks=False)
                key = (info.st_dev, info.st_ino)
                if key in above:
                    broken[sub] = link_problem(entry.path) or "folder loop (not followed)"
                else:
                    pending.append((sub, entry.path, (*above, key)))
            elif is_image_name(entry.name):
                if stat.S_ISREG(info.st_mode) if info else entry.is_file(follow_symlinks=False):
                    paths.append(sub)
    require_utf8([*paths, *broken], top)
    return ImageFiles(sorted([*paths, *broken], key=path_order), broken)


def link_problem(path: str | os.PathLike) -> str | None:
    """Why the symbolic link ``path`` cannot be read as an image file (dangling, a loop, a
    folder); None when ``path`` is no link or leads to a file."""
    try:
        target = os.readlink(path)
    except OSError:
        return None  # not a link
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return f"dangling symbolic link to {target} (the target does not exist)"
        if err.errno == errno.ELOOP:
            return f"symbolic link loop ({target} leads back to the link)"
        return f"symbolic link to {target} cannot be followed ({err.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return None
    real = os.path.realpath(path)
    parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    if parent == real or parent.startswith(real.rstrip(os.sep) + os.sep):
        return f"symbolic link loop: {target} is a folder that holds the link (not followed)"
    return f"symbolic link to the folder {target}, not an image file"


def shown_name(path: str | os.PathLike) -> str:
    """A file name as text, bytes that are not UTF-8 escaped (``caf\\xe9.png``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def require_utf8(names: Iterable[str], where: str | os.PathLike) -> None:
    """Refuse names (relative to ``where``) that are not valid UTF-8: Python reads such bytes
    as lone surrogates, which no UTF-8 file (index, embedding file, results) can hold."""
    bad = []
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(name)
    if not bad:
        return
    first = shown_name(os.path.join(where, bad[0]))
    more = f" ({len(bad) - 1:,} more names below {shown_name(where)} too)" if len(bad) > 1 else ""
    raise UnusableFileName(
        f"{first}: the file name is not valid UTF-8{more}; the index and the embedding files "
        "store names as UTF-8. Rename the files to UTF-8 names (for example convmv -f latin1 "
        f"-t utf-8 -r --notest {shown_name(where)}), then run again."
    )
