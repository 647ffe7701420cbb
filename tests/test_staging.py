"""Staged inputs (clustermine.staging): what a job that read node-local copies records.

The end-to-end run with staging on SLURM is tests/test_slurm.py
(test_staged_jobs_read_node_local_copies_and_write_to_the_shared_folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clustermine import staging
from clustermine.staging import note_staging, recorded_path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A work folder (the cwd, as in a job) with a result and a scratch folder of copies."""
    work = tmp_path / "work"
    (work / "results" / "m").mkdir(parents=True)
    (work / "results" / "m" / "train set é.h5").write_bytes(b"x")
    monkeypatch.chdir(work)
    monkeypatch.delenv(staging.ENV, raising=False)
    scratch = tmp_path / "node scratch" / "123"
    note_staging("fs", scratch)
    yield work, scratch / "fs"
    os.environ.pop(staging.ENV, None)


def test_a_staged_copy_of_a_result_is_recorded_by_its_workflow_path(workdir):
    work, copies = workdir
    copy = copies / "results" / "m" / "train set é.h5"
    assert recorded_path(copy) == "results/m/train set é.h5"
    assert recorded_path(str(copy)) == "results/m/train set é.h5"


def test_a_relative_prefix_is_resolved_against_the_cwd(workdir, monkeypatch):
    work, _ = workdir
    note_staging("fs", ".snakemake/storage")  # Snakemake's default local prefix
    assert os.environ[staging.ENV] == str(work / ".snakemake" / "storage" / "fs")
    assert recorded_path(".snakemake/storage/fs/results/m/a.h5") == "results/m/a.h5"


def test_a_staged_copy_of_an_absolute_input_is_recorded_by_its_absolute_path(workdir, tmp_path):
    _, copies = workdir
    data = tmp_path / "data" / "words.txt"
    data.parent.mkdir()
    data.write_text("cat\n")
    # the fs plugin puts the copy of /a/b at <copies>/a/b
    copy = copies / str(data).lstrip("/")
    assert recorded_path(copy) == str(data)


def test_where_both_readings_exist_the_workflow_path_wins(workdir, tmp_path):
    work, copies = workdir
    # a relative result whose path also exists from the root (here: the work folder's own)
    rel = work.relative_to("/")
    for target in (work / rel / "x.h5", work / "x.h5"):  # rel/x.h5, and /rel/x.h5
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    assert (work / rel / "x.h5").exists() and (Path("/") / rel / "x.h5").exists()
    assert recorded_path(copies / rel / "x.h5") == str(rel / "x.h5")


@pytest.mark.parametrize("path", ["results/m/a.h5", "/elsewhere/results/m/a.h5", ""])
def test_paths_that_are_no_staged_copy_are_kept_as_given(workdir, path):
    assert recorded_path(path) == path


def test_the_copies_folder_itself_and_its_neighbours_are_kept(workdir):
    _, copies = workdir
    assert recorded_path(copies) == str(copies)
    sibling = copies.parent / "fs-other" / "results" / "a.h5"  # a prefix of the name only
    assert recorded_path(sibling) == str(sibling)


def test_without_staging_nothing_is_mapped(workdir):
    _, copies = workdir
    for provider, prefix in ((None, ".snakemake/storage"), ("s3", "/scratch"), ("fs", None)):
        note_staging(provider, prefix)
        assert staging.ENV not in os.environ
        copy = copies / "results" / "m" / "train set é.h5"
        assert recorded_path(copy) == str(copy)


def test_a_job_loads_the_staged_copy_of_a_checkpoint_under_its_config_path(tmp_path):
    """A local checkpoint is an input of the encoding jobs: with staging they read the copy,
    and the embeddings still name the checkpoint the config gives (so files made by jobs with
    different scratch folders agree on their model)."""
    import torch

    from clustermine.models import load_model

    arch = "clustermine-tiny"
    original = load_model(arch, None, device="cpu")
    configured = tmp_path / "models" / "tiny.pt"
    configured.parent.mkdir()
    torch.save({k: v + 1 for k, v in original.model.state_dict().items()}, configured)
    copy = tmp_path / "scratch" / "fs" / "models" / "tiny.pt"
    copy.parent.mkdir(parents=True)
    shutil.copy(configured, copy)
    configured.unlink()  # only the copy can be read now
    loaded = load_model(arch, str(configured), device="cpu", checkpoint_copy=copy)
    assert loaded.pretrained == str(configured)
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, original.model.state_dict()[key] + 1)
    with pytest.raises(FileNotFoundError, match="models.m.pretrained: checkpoint file"):
        load_model(arch, str(configured), device="cpu", slug="m")
