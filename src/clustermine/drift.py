"""Drift of a deployed detector's traffic against its calibration (docs/deploy.md, "Drift").

The scores a detector gives are collected in tumbling windows of ``window`` images (images
without a score are left out). Each full window is tested once, against the held-out ID scores
of the detector's calibration, by two one-sided tests at ``level / 2`` each, so that a window
of unshifted ID images raises an alarm with probability at most ``level`` however often the
state is read (windows are never re-tested as images arrive):

- **new things arrive**: K, the number of the window's m images flagged OOD (score below the
  threshold t), against its law for ID images. With n calibration scores, c of them below t,
  the share of ID images below t is Beta(c + 1, n − c) (the law of an order statistic), so K is
  beta-binomial(m, c + 1, n − c): exact under exchangeability, the calibration set's own
  randomness included (a plain binomial test at 5% ignores it and raises about twice as many
  false alarms with 1,000 calibration images and windows of 500).
- **the ID moved**: the window's scores above t against the calibration's scores above t, by
  a one-sided Mann-Whitney U test (the window's lower); scores tied with t are left out of
  both. Images above a calibration order statistic are exchangeable with the calibration
  images above it, so the test is valid whatever the score's scale; new OOD images, flagged, do not move it, while a
  covariate shift that lowers every score without crossing t does.

Effect sizes come with each test: the flagged share against the expected (c + 1) / (n + 1) and
their ratio; the AUC of "a window image scores below a calibration image" over the accepted
ones (0.5 without shift); the window's median p-value (0.5 without shift).

State lives in memory, in one process: a restart starts with no windows, and several
processes serving one detector each monitor their own traffic.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NEW_THINGS = "new things arrive"
ID_MOVED = "the ID moved"
NO_DRIFT = "no drift"
DEFAULT_WINDOW = 500
DEFAULT_LEVEL = 0.01


@dataclass
class WindowTest:
    """The tests of one full window (see the module's text)."""

    index: int
    images: int
    flagged: int
    flagged_share: float
    expected_flagged_share: float
    flagged_ratio: float
    p_new_things: float
    id_shift_auc: float
    p_id_moved: float
    median_p_value: float
    verdict: str
    alarm: bool


class DriftMonitor:
    """Tumbling-window drift tests of the scores of one detector against its calibration.

    ``calibration``: the held-out ID scores (any order); ``threshold``: images below it are
    flagged OOD; ``window``: images per test; ``level``: the false-alarm probability of one
    window of unshifted ID images (split evenly between the two tests); ``history``: windows
    kept in :meth:`state`.
    """

    def __init__(
        self,
        calibration: np.ndarray,
        threshold: float,
        window: int = DEFAULT_WINDOW,
        level: float = DEFAULT_LEVEL,
        history: int = 20,
    ) -> None:
        cal = np.sort(np.asarray(calibration, dtype=np.float64).ravel())
        if not len(cal) or not np.isfinite(cal).all():
            raise ValueError("drift: the calibration scores must be finite and not empty")
        if int(window) < 10:
            raise ValueError(f"drift: a window holds at least 10 images, got {window}")
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"drift: the level is a probability in (0, 1), got {level}")
        if not np.isfinite(float(threshold)):
            raise ValueError(f"drift: the threshold must be finite, got {threshold}")
        self.calibration, self.threshold = cal, float(threshold)
        self.window, self.level = int(window), float(level)
        below = int(np.searchsorted(cal, self.threshold, side="left"))
        # Beta(c + 1, n - c): the share of ID images below t; n - c >= 1 keeps it proper.
        self._beta = (below + 1.0, max(len(cal) - below, 1))
        self.expected_flagged_share = (below + 1.0) / (len(cal) + 1.0)
        self._accepted = cal[cal > self.threshold]
        self._lock = threading.Lock()
        self._current: list[float] = []
        self.tests: deque[WindowTest] = deque(maxlen=int(history))
        self.images = 0
        self.windows = 0
        self.alarms = {NEW_THINGS: 0, ID_MOVED: 0}

    def add(self, scores: np.ndarray) -> list[WindowTest]:
        """Add scores (NaN and inf are left out); the tests of the windows this completes."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        scores = scores[np.isfinite(scores)]
        done = []
        with self._lock:
            self.images += len(scores)
            for s in scores.tolist():
                self._current.append(s)
                if len(self._current) == self.window:
                    done.append(self._test(np.asarray(self._current)))
                    self._current = []
        return done

    def reset(self) -> None:
        """Forget every window: after a change the traffic is known to have made."""
        with self._lock:
            self._current, self.images, self.windows = [], 0, 0
            self.tests.clear()
            self.alarms = dict.fromkeys(self.alarms, 0)

    def _test(self, x: np.ndarray) -> WindowTest:
        from scipy import stats

        m = len(x)
        flagged = int((x < self.threshold).sum())
        p_new = float(stats.betabinom.sf(flagged - 1, m, *self._beta))
        accepted = x[x > self.threshold]  # as the calibration's: ties with t left out
        if len(accepted) and len(self._accepted):
            u = stats.mannwhitneyu(accepted, self._accepted, alternative="less")
            p_moved = float(u.pvalue)
            # U counts pairs with the window's score above: AUC of "window below".
            auc = 1.0 - float(u.statistic) / (len(accepted) * len(self._accepted))
        else:
            p_moved, auc = 1.0, 0.5
        p_values = np.searchsorted(self.calibration, x, side="right") / len(self.calibration)
        new, moved = p_new < self.level / 2, p_moved < self.level / 2
        verdict = " and ".join(w for w, on in ((NEW_THINGS, new), (ID_MOVED, moved)) if on)
        test = WindowTest(
            index=self.windows, images=m, flagged=flagged, flagged_share=flagged / m,
            expected_flagged_share=self.expected_flagged_share,
            flagged_ratio=flagged / m / self.expected_flagged_share,
            p_new_things=p_new, id_shift_auc=auc, p_id_moved=p_moved,
            median_p_value=float(np.median(p_values)), verdict=verdict or NO_DRIFT,
            alarm=new or moved,
        )  # fmt: skip
        self.windows += 1
        self.alarms[NEW_THINGS] += new
        self.alarms[ID_MOVED] += moved
        self.tests.append(test)
        return test

    def state(self) -> dict[str, Any]:
        """Settings, counts, the last full window's tests (``verdict``: what they say, or that
        no window is full yet), the windows kept, and the window being filled."""
        with self._lock:
            current = np.asarray(self._current)
            last = self.tests[-1] if self.tests else None
            return {
                "window": self.window,
                "level": self.level,
                "threshold": self.threshold,
                "calibration_size": len(self.calibration),
                "expected_flagged_share": self.expected_flagged_share,
                "images": self.images,
                "windows": self.windows,
                "alarms": dict(self.alarms),
                "verdict": last.verdict if last else (
                    f"no full window yet ({len(current)} of {self.window} images)"),
                "last_window": asdict(last) if last else None,
                "history": [asdict(t) for t in self.tests],
                "current": {
                    "images": len(current),
                    "flagged_share": float((current < self.threshold).mean())
                    if len(current) else None,
                },
            }  # fmt: skip

    def summary(self) -> str:
        """One line: windows, alarms of each kind, the last verdict with its effect sizes."""
        s = self.state()
        if not s["windows"]:
            return f"drift: {s['verdict']}"
        last = s["last_window"]
        return (
            f"drift: {s['windows']} window(s) of {self.window} images tested at level "
            f"{self.level:g}: {s['alarms'][NEW_THINGS]} with new things arriving, "
            f"{s['alarms'][ID_MOVED]} with the ID moved; last window: {last['verdict']} "
            f"(flagged {last['flagged_share']:.1%} against {last['expected_flagged_share']:.1%} "
            f"expected, p = {last['p_new_things']:.2g}; ID-shift AUC {last['id_shift_auc']:.3f}, "
            f"p = {last['p_id_moved']:.2g})"
        )
