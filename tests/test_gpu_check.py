"""The GPU check (benchmarks/gpu_check.sh) refuses to run without CUDA, and its stages' code
runs at toy size on the CPU (so a lent GPU is not spent finding a typo; no figures)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_refuses_clearly_without_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GPU_CHECK_TIMEOUT": "120"}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--only", "knn"],
                         capture_output=True, text=True, env=env, timeout=180)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "no CUDA device is available" in res.stderr and "Nothing was measured" in res.stderr
    assert res.stdout == ""


def load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_stage_runs_at_toy_size_on_the_cpu(monkeypatch, tmp_path):
    check = load_check()
    monkeypatch.setattr(check, "DEVICE", "cpu")
    out = tmp_path / "figures.json"
    args = check.parse_args([
        "--n", "300", "--dim", "16", "--clusters", "5", "--heads", "2", "--kmeans-iters", "2",
        "--knn-queries", "100", "--images", "200", "--names", "500", "--archs",
        "clustermine-tiny", "--encode-batch", "4", "--encode-seconds", "0", "--jpegs", "8",
        "--workers", "1", "--pipeline-arch", "clustermine-tiny", "--budget-mb", "16",
        "--features-arch", "clustermine-tiny", "--view-images", "2", "--stream-rows", "300",
        "--stream-names", "50", "--ivf-rows", "400",
        "--out", str(out),
    ])  # fmt: skip
    results = check.run(args)
    assert set(check.STAGES) <= set(results)
    for stage in check.STAGES:
        assert "error" not in results[stage], results[stage]
    assert results["knn"]["queries"] == 100 and results["kmeans"]["iterations"] >= 1
    assert results["features"]["recommended_views"] == 12
    assert results["features"]["patches"] >= 1
    assert 0 < results["scale"]["ivf_recall"] <= 1 and results["scale"]["ivf_device"] == "cpu"
    assert out.exists()
