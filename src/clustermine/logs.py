"""Logging for workflow jobs: one log file per job, plus stderr."""

from __future__ import annotations

import logging
import signal
import sys
import threading


def _exit_on_sigterm(signum, frame):
    # SLURM (scancel, time limit, pre-emption) and Snakemake end jobs with SIGTERM. Raising
    # SystemExit unwinds the stack, so `atomic_path` removes its temporary file; the default
    # action would end the process without running any cleanup.
    raise SystemExit(128 + signum)


def _log_uncaught(exc_type, exc, tb):
    # The job's log then ends with the reason it failed, not only the traceback on stderr.
    if not issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
        logging.getLogger("clustermine").error("job failed: %s: %s", exc_type.__name__, exc)
    sys.__excepthook__(exc_type, exc, tb)


def setup_logging(log_file: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and ``log_file``; write an uncaught error into the log too; make SIGTERM
    a clean exit (see _exit_on_sigterm)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    # faiss reports at INFO which of its CPU builds it could not load (a ModuleNotFoundError
    # text in every job that imports it): noise that reads like an error.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    sys.excepthook = _log_uncaught
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return logging.getLogger("clustermine")
