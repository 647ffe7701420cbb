"""Reading the text files that hold names and paths (word lists, class-name files, class maps,
file lists) and config files: UTF-8, a byte-order mark at the start dropped (some editors
write one, and it would otherwise become part of the first name or path), bytes that are not
UTF-8 named by file and line."""

from __future__ import annotations

import os
from pathlib import Path

BOM = b"\xef\xbb\xbf"


def read_text(
    path: str | os.PathLike, what: str = "file", error: type[Exception] = ValueError
) -> str:
    """The text of a UTF-8 file, a byte-order mark at its start dropped; raises ``error``
    naming the file and line when it is not UTF-8 (``what`` says what the file is)."""
    data = Path(path).read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x}); save the {what} as "
            "UTF-8, e.g. with iconv -f latin1 -t utf-8"
        ) from None


def read_lines(
    path: str | os.PathLike, what: str = "file", error: type[Exception] = ValueError
) -> list[str]:
    """The lines of a UTF-8 text file (:func:`read_text`), without line ends (``\\n`` or
    ``\\r\\n``)."""
    lines = read_text(path, what, error).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
