"""Jobs whose inputs are staged to node-local scratch (Snakemake's ``fs`` storage plugin).

With ``default-storage-provider: fs`` (profiles/slurm, docs/slurm.md) a job reads copies of its
inputs under ``<local storage prefix>/fs/`` and writes its outputs there before Snakemake copies
them to the shared folder. Outputs record the files they were made from (``source``, ``train``,
``images``, ...); a staged copy's path means nothing once the job has ended and differs from job
to job, so what is recorded is the file's workflow path, the same as in a run without staging.

The Snakefile calls :func:`note_staging` in every Snakemake process that parses it (the main one
and each job's); the scripts it starts inherit the environment and map paths with
:func:`recorded_path`. Standard library only: the Snakefile's parse path stays numpy-free.
"""

from __future__ import annotations

import os
from pathlib import Path

# The folder of this job's staged copies, set only where inputs are staged.
ENV = "CLUSTERMINE_STAGED_COPIES"
# Snakemake keeps the copies of a storage provider's files under <prefix>/<provider name>/.
PROVIDER = "fs"


def note_staging(provider: str | None, local_prefix: str | os.PathLike | None) -> None:
    """Record in the environment where this process's staged copies lie (or that none are)."""
    if provider == PROVIDER and local_prefix is not None:
        os.environ[ENV] = os.path.abspath(os.path.join(local_prefix, PROVIDER))
    else:
        os.environ.pop(ENV, None)


def recorded_path(path: str | os.PathLike) -> str:
    """The path to record for a file a job read: its workflow path where ``path`` is a staged
    copy, else ``path`` as given.

    The fs plugin puts the copy of ``results/x.h5`` at ``<copies>/results/x.h5`` and that of
    ``/data/x`` at ``<copies>/data/x``; the workflow path is whichever of the two exists (a job's
    inputs exist in the shared folder while it runs), the relative one where both do.
    """
    copies = os.environ.get(ENV)
    text = os.fspath(path)
    if not copies:
        return text
    try:
        rest = Path(os.path.abspath(text)).relative_to(copies)
    except ValueError:
        return text
    if rest == Path("."):
        return text
    if not rest.exists() and Path("/", rest).exists():
        return str(Path("/", rest))
    return str(rest)
