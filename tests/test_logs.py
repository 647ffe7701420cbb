"""Job logs: what clustermine.logs.setup_logging lets through."""

from __future__ import annotations

import subprocess
import sys


def test_job_logs_keep_faiss_loader_noise_out(tmp_path):
    log = tmp_path / "job.log"
    code = (
        "from clustermine.logs import setup_logging\n"
        f"log = setup_logging({str(log)!r})\n"
        "import faiss\n"
        "log.info('job started')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = log.read_text()
    assert "job started" in text
    assert "faiss.loader" not in text and "ModuleNotFoundError" not in text
