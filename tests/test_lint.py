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


def test_the_workflow_catalog_file_names_what_exists():
    """.snakemake-workflow-catalog.yml: the catalog's keys, a profile and a conda environment
    that exist, and the catalog's layout (workflow/Snakefile, config/README.md)."""
    import re

    import yaml

    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert set(usage["software-stack-deployment"]) == {"conda", "apptainer", "apptainer+conda"}
    profile = re.search(r"--workflow-profile (\S+)", usage["mandatory-flags"]["flags"]).group(1)
    assert (REPO / profile / "profile.yaml").is_file()
    rules = "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    envs = set(re.findall(r'conda:\s*\n\s*"([^"]+)"', rules))
    assert envs == {"../envs/clustermine.yaml"}
    assert (REPO / "workflow/envs/clustermine.yaml").is_file()
    assert SNAKEFILE == REPO / "workflow/Snakefile" and (REPO / "config/README.md").is_file()
