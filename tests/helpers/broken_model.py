"""Real inputs that break a deployed detector in ways it must report: a model checkpoint whose
image tower gives NaN embeddings, and a small file system that is full."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest


def nan_checkpoint(path: Path) -> Path:
    """A checkpoint of the tiny model whose first image-tower weight is NaN: every image's
    embedding is NaN, however readable the image."""
    import torch

    from clustermine.models import load_model

    state = load_model("clustermine-tiny", None, "cpu").model.state_dict()
    key = next(k for k in state if k.startswith("visual") and state[k].is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, path)
    return path


@contextlib.contextmanager
def small_filesystem(path: Path, size_bytes: int):
    """A tmpfs of ``size_bytes`` mounted at ``path`` (root only); skips the test where no
    file system can be mounted."""
    path.mkdir(parents=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
            capture_output=True, text=True,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("a full disk is tested on a small tmpfs, and there is no mount command")
    if mounted.returncode != 0:
        pytest.skip(
            "a full disk is tested on a small tmpfs, and mounting one failed here "
            f"({mounted.stderr.strip()}); run the tests as root to include it"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(folder: Path) -> None:
    """Write a file into ``folder`` until its file system is full."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
