"""The workflow is formatted as snakefmt formats it and passes Snakemake's own linter."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO, SNAKEFILE


def test_snakefmt_leaves_the_workflow_unchanged():
    out = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "--diff", "workflow"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_snakemake_lint_finds_nothing():
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--lint"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr
