"""Shared fixtures; the helpers they use live in the ``helpers`` package beside this file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers import REPO, make_tiny_project  # noqa: E402


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    """A work directory with tiny image folders, a word list and ``config.yaml``."""
    return make_tiny_project(tmp_path)


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids spinning on a shared, loaded CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
