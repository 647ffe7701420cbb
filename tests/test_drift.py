"""The drift monitor (clustermine.drift): its two tests re-derived independently, its
false-alarm rate on unshifted streams, the two kinds of drift told apart on seeded streams,
and the monitor where a detector runs (the Python API, ``clustermine score``, ``GET /drift``
and ``GET /metrics`` of a real server on 127.0.0.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import requests
from helpers.service import make_detector, serving, upload

import clustermine
from clustermine.deploy.inputs import gather_paths
from clustermine.deploy.service import Limits
from clustermine.drift import ID_MOVED, NEW_THINGS, NO_DRIFT, DriftMonitor

N_CAL, WINDOW, LEVEL = 1000, 500, 0.01


def calibrated(seed: int, n: int = N_CAL, acceptance: float = 0.95):
    """Calibration scores (standard normal) and the threshold accepting ``acceptance``."""
    cal = np.random.default_rng(seed).normal(size=n)
    return cal, np.sort(cal)[n - math.ceil(acceptance * n)]


def beta_binomial_tail(k: int, m: int, a: float, b: float) -> float:
    """P(K >= k) for K ~ beta-binomial(m, a, b), summed from its pmf in log space."""
    def log_pmf(j):
        return (math.lgamma(m + 1) - math.lgamma(j + 1) - math.lgamma(m - j + 1)
                + math.lgamma(j + a) + math.lgamma(m - j + b) - math.lgamma(m + a + b)
                - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))  # fmt: skip

    return float(sum(math.exp(log_pmf(j)) for j in range(k, m + 1)))


def test_the_window_tests_are_their_formulas():
    """The flagged count against beta-binomial(m, c + 1, n - c), and the accepted scores'
    Mann-Whitney AUC as a count of pairs, re-derived on a window with ties at the threshold."""
    cal, t = calibrated(0, n=200)
    mon = DriftMonitor(cal, t, window=50, level=LEVEL)
    x = np.random.default_rng(1).normal(-0.3, 1.0, size=50)
    x[:3] = t  # ties with the threshold: accepted, and left out of the ID-moved test
    [test] = mon.add(x)
    c = int((cal < t).sum())
    k = int((x < t).sum())
    assert test.flagged == k and test.expected_flagged_share == pytest.approx((c + 1) / 201)
    assert test.p_new_things == pytest.approx(beta_binomial_tail(k, 50, c + 1, 200 - c), rel=1e-9)
    accepted, cal_accepted = x[x > t], cal[cal > t]
    below = (accepted[:, None] < cal_accepted[None, :]).sum()
    ties = (accepted[:, None] == cal_accepted[None, :]).sum()
    auc = (below + 0.5 * ties) / (len(accepted) * len(cal_accepted))
    assert test.id_shift_auc == pytest.approx(auc, rel=1e-12)
    p = np.searchsorted(np.sort(cal), x, side="right") / len(cal)
    assert test.median_p_value == pytest.approx(np.median(p))
    # A window of nothing but flagged images: no accepted score to compare, no ID-moved test.
    [low] = mon.add(np.full(50, t - 10.0))
    assert low.p_id_moved == 1.0 and low.id_shift_auc == 0.5 and low.verdict == NEW_THINGS


def test_unshifted_streams_keep_the_stated_false_alarm_rate():
    """1,500 windows of ID images, each with a fresh calibration set (seed 0): each test fires
    in about level / 2 of them; the plain binomial test that ignores the calibration's own
    randomness would fire several times as often."""
    from scipy import stats

    rng = np.random.default_rng(0)
    new = moved = naive = 0
    windows = 1500
    for _ in range(windows):
        cal, t = calibrated(int(rng.integers(2**31)))
        [test] = DriftMonitor(cal, t, WINDOW, LEVEL).add(rng.normal(size=WINDOW))
        new += test.p_new_things < LEVEL / 2
        moved += test.p_id_moved < LEVEL / 2
        naive += stats.binom.sf(test.flagged - 1, WINDOW, 0.05) < LEVEL / 2
    # Binomial(1500, 0.005) is above 16 with probability 0.002.
    assert new <= 16 and moved <= 16, (new, moved)
    assert naive >= 2 * max(new, 1), (naive, new)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_new_things_and_a_moved_id_are_told_apart(seed):
    """Seeded streams of 10 windows each: unshifted ID images raise no alarm; 10% of images
    from far below the ID (new things) raise "new things arrive" only; every ID score lowered
    by 0.4 standard deviations (a covariate shift) raises "the ID moved"."""
    cal, t = calibrated(100 + seed)
    rng = np.random.default_rng(seed)
    n = 10 * WINDOW

    def windows(x):
        mon = DriftMonitor(cal, t, WINDOW, LEVEL)
        return mon, mon.add(x)

    mon, tests = windows(rng.normal(size=n))
    assert mon.alarms == {NEW_THINGS: 0, ID_MOVED: 0}
    assert {w.verdict for w in tests} == {NO_DRIFT} and len(tests) == 10

    x = rng.normal(size=n)
    new = rng.random(n) < 0.10
    x[new] = rng.normal(-6.0, 1.0, size=new.sum())
    mon, tests = windows(x)
    assert mon.alarms[NEW_THINGS] == 10 and mon.alarms[ID_MOVED] <= 1
    assert all(w.flagged_ratio > 2 for w in tests)

    mon, tests = windows(rng.normal(-0.4, 1.0, size=n))
    assert mon.alarms[ID_MOVED] >= 9
    assert all(w.id_shift_auc > 0.55 and w.median_p_value < 0.5 for w in tests)


def test_scores_without_a_value_and_bad_settings():
    cal, t = calibrated(0)
    mon = DriftMonitor(cal, t, window=10)
    assert mon.add([np.nan, np.inf, -np.inf, 0.0]) == [] and mon.images == 1
    assert mon.state()["verdict"] == "no full window yet (1 of 10 images)"
    assert "no full window yet" in mon.summary()
    assert len(mon.add(np.zeros(19))) == 2 and mon.state()["current"]["images"] == 0
    mon.reset()
    assert mon.state()["windows"] == 0 and mon.state()["last_window"] is None
    for kwargs, message in [({"window": 5}, "at least 10"), ({"level": 1.5}, "level"),
                            ({"threshold": np.nan}, "threshold")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            DriftMonitor(cal, **{"threshold": t, **kwargs})
    with pytest.raises(ValueError, match="finite"):
        DriftMonitor([0.0, np.nan], 0.0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    return root, make_detector(root)


def test_a_deployed_detector_monitors_what_it_scores(bundle):
    root, path = bundle
    det = clustermine.load_detector(path, device="cpu", drift_window=10, drift_level=0.05)
    assert det.describe()["drift"] == {"window": 10, "level": 0.05}
    images = gather_paths([root / "id", root / "ood"])  # 12 + 4 images
    det.predict(images[:6])
    assert det.drift.state()["images"] == 6 and det.drift.windows == 0
    out = det.predict(images[6:] + [root / "missing.png"])  # an unreadable one: not counted
    assert out.num_errors == 1 and det.drift.images == 16 and det.drift.windows == 1
    assert det.drift.state()["last_window"]["flagged"] == sum(
        bool(x) for x in det.predict(images[:10]).ood)  # the first window's images  # fmt: skip
    det.set_threshold(id_acceptance=0.5)  # another threshold: a new monitor
    assert det.drift.images == 0 and det.drift.threshold == det.threshold


def test_serve_answers_drift_and_metrics(bundle):
    import re

    root, path = bundle
    det = clustermine.load_detector(path, device="cpu", drift_window=10)
    paths = gather_paths([root / "id", root / "ood"])
    with serving(det, Limits()) as url:
        assert requests.get(f"{url}/drift").json()["verdict"].startswith("no full window")
        for chunk in (paths[:8], paths[8:]):
            assert requests.post(f"{url}/score", files=upload(chunk)).status_code == 200
        assert requests.post(f"{url}/score", data={"x": "1"}).status_code == 415
        drift = requests.get(f"{url}/drift").json()
        text = requests.get(f"{url}/metrics").text
    assert drift["enabled"] and drift["windows"] == 1 and drift["images"] == 16
    assert drift["last_window"]["verdict"] in (NO_DRIFT, NEW_THINGS, ID_MOVED,
                                               f"{NEW_THINGS} and {ID_MOVED}")  # fmt: skip

    def value(name, labels=""):
        m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
        assert m, f"{name}{labels} not in /metrics:\n{text}"
        return float(m.group(1))

    assert value("clustermine_images_total") == 16
    assert value("clustermine_image_errors_total") == 0
    assert value("clustermine_requests_total", '{path="/score",status="200"}') == 2
    assert value("clustermine_requests_total", '{path="/score",status="415"}') == 1
    assert value("clustermine_score_count") == 16
    assert value("clustermine_drift_windows") == 1
    assert value("clustermine_drift_window_flagged_share") == drift["last_window"]["flagged_share"]
    assert value("clustermine_drift_alarms", '{kind="new_things"}') == drift["alarms"][NEW_THINGS]
    flagged = value("clustermine_images_flagged_ood_total")
    assert flagged == sum(r["ood"] for r in det.predict(paths).rows())
