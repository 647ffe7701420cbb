"""``clustermine score`` on a demo ClusterMine detector (the demo model trained briefly on the
real demo data, tests/helpers/demo_detector.py): it flags held-out digits as OOD and passes
most Fashion-MNIST test images it never saw; the API agrees with it; and its bundle scores
the same once the checkpoint and the detector file are gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers.demo_detector import build_demo_detector, demo_data_available

import clustermine
from clustermine.deploy.bundle import export_bundle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not demo_data_available(),
        reason="needs the Debian packages dataset-fashion-mnist and tuxpaint-stamps-default",
    ),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_detector(tmp_path_factory.mktemp("demo-detector"))


@pytest.fixture(scope="module")
def scored(demo):
    """The command on the held-out Fashion-MNIST images and digits, rows by folder."""
    out = subprocess.run(
        [sys.executable, "-m", "clustermine.cli", "score", str(demo["detector"]),
         "fmnist-new", "digits-heldout", "--no-progress"],
        cwd=demo["detector"].parent, capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.splitlines()]
    assert lines[0] == ["path", "score", "p_value", "ood", "error"]
    rows = {"fmnist-new": [], "digits-heldout": []}
    for path, score, p_value, ood, error in lines[1:]:
        assert not error, (path, error)
        rows[path.split("/")[0]].append((path, float(score), float(p_value), ood == "true"))
    return rows, out.stderr


def test_flags_held_out_digits_and_passes_fashion_mnist(scored):
    rows, summary = scored
    assert len(rows["fmnist-new"]) == 500 and len(rows["digits-heldout"]) == 300
    flagged_digits = np.mean([ood for *_, ood in rows["digits-heldout"]])
    passed_fmnist = 1 - np.mean([ood for *_, ood in rows["fmnist-new"]])
    # Measured: 100% of the digits flagged, 94.4% of the new Fashion-MNIST images passed (the
    # threshold accepts 95% of the calibration images, drawn from the same test set).
    assert flagged_digits >= 0.95, flagged_digits
    assert passed_fmnist >= 0.88, passed_fmnist
    assert "800 of 800 images" in summary and "fmnist-calibration" in summary
    # Digits are less in-distribution than nearly every held-out ID image.
    assert np.median([p for _, _, p, _ in rows["digits-heldout"]]) <= 0.01


def test_api_agrees_with_the_command_and_the_bundle_with_both(demo, scored, tmp_path):
    rows, _ = scored
    root = demo["detector"].parent
    paths = [str(root / path) for path, *_ in rows["fmnist-new"] + rows["digits-heldout"]]
    want = np.array([score for _, score, *_ in rows["fmnist-new"] + rows["digits-heldout"]])
    api = clustermine.load_detector(demo["detector"], device="cpu")
    out = api.predict(paths, top_labels=True)
    np.testing.assert_allclose(out.scores, want, rtol=1e-6, atol=1e-12)
    assert out.num_ood == sum(ood for *_, ood in rows["fmnist-new"] + rows["digits-heldout"])
    assert {x.name for x in out.top_positive[:500]} <= set(api.detector.text_pos.names)
    bundle = tmp_path / "bundle"
    export_bundle(demo["detector"], bundle)
    # Nothing of the workflow left: no checkpoint, no detector file.
    shutil.rmtree(demo["checkpoint"].parent)
    demo["detector"].unlink()
    again = clustermine.load_detector(bundle, device="cpu").score_images(paths)
    np.testing.assert_array_equal(again, out.scores)
