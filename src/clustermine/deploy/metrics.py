"""The service's Prometheus metrics (``GET /metrics``, docs/deploy.md): requests, images and
errors as counters, request latency and scores as histograms, and the drift monitor's state
(:mod:`clustermine.drift`) as gauges read when scraped. Each service has its own registry, so
that several in one process do not mix their counts."""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np

# Paths counted by name; anything else (a typo, a scan) is counted as "other".
PATHS = ("/score", "/drift", "/info", "/health", "/metrics")
# Score buckets at these quantiles of the held-out ID scores (the scale differs per method).
SCORE_QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


class ServiceMetrics:
    """The metrics of one service of ``detector`` (a ``DeployedDetector``)."""

    def __init__(self, detector) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.detector = detector
        self.registry = r = CollectorRegistry()
        self.requests = Counter("clustermine_requests", "HTTP requests, by path and status",
                                ["path", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("clustermine_request_seconds", "HTTP request latency",
                                 ["path"], registry=r)  # fmt: skip
        self.images = Counter("clustermine_images", "images scored (with or without a score)",
                              registry=r)  # fmt: skip
        self.errors = Counter("clustermine_image_errors",
                              "images that got no score (unreadable, NaN or infinite)",
                              registry=r)  # fmt: skip
        self.flagged = Counter("clustermine_images_flagged_ood", "images scored below the "
                               "threshold", registry=r)  # fmt: skip
        self.scores = Histogram("clustermine_score", "scores (higher: more in-distribution); "
                                "buckets at quantiles of the held-out ID scores",
                                buckets=score_buckets(detector), registry=r)  # fmt: skip
        last = "of the last full drift window"
        gauges = {
            "clustermine_drift_windows": ("full windows tested", lambda s: s["windows"]),
            "clustermine_drift_window_flagged_share": (
                f"share of images flagged OOD {last}", lambda s: _last(s, "flagged_share")),
            "clustermine_drift_expected_flagged_share": (
                "share of ID images expected below the threshold",
                lambda s: s["expected_flagged_share"]),
            "clustermine_drift_flagged_ratio": (
                f"flagged share over the expected one {last}", lambda s: _last(s, "flagged_ratio")),
            "clustermine_drift_p_new_things": (
                f"p-value of 'new things arrive' {last}", lambda s: _last(s, "p_new_things")),
            "clustermine_drift_id_shift_auc": (
                f"AUC of 'window scores below calibration scores' {last} (0.5: no shift)",
                lambda s: _last(s, "id_shift_auc")),
            "clustermine_drift_p_id_moved": (
                f"p-value of 'the ID moved' {last}", lambda s: _last(s, "p_id_moved")),
            "clustermine_drift_alarm": (
                f"1 when the tests {last} raise an alarm", lambda s: _last(s, "alarm")),
            "clustermine_drift_current_flagged_share": (
                "share of images flagged OOD in the window being filled",
                lambda s: s["current"]["flagged_share"]),
        }  # fmt: skip
        for name, (doc, read) in gauges.items():
            Gauge(name, doc, registry=r).set_function(self._reader(read))
        alarms = Gauge("clustermine_drift_alarms", "windows with an alarm, by kind", ["kind"],
                       registry=r)  # fmt: skip
        from clustermine.drift import ID_MOVED, NEW_THINGS

        for kind, key in (("new_things", NEW_THINGS), ("id_moved", ID_MOVED)):
            alarms.labels(kind=kind).set_function(self._reader(lambda s, k=key: s["alarms"][k]))

    def _reader(self, read):
        def value() -> float:
            drift = self.detector.drift
            got = read(drift.state()) if drift is not None else None
            return float("nan") if got is None else float(got)

        return value

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        path = path if path in PATHS else "other"
        self.requests.labels(path=path, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)

    def observe_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.images.inc()
            if row.get("error"):
                self.errors.inc()
                continue
            self.scores.observe(row["score"])
            if row.get("ood"):
                self.flagged.inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _last(state: dict[str, Any], key: str):
    last = state["last_window"]
    return None if last is None else last[key]


def score_buckets(detector) -> tuple[float, ...]:
    """Histogram buckets at quantiles of the calibration scores and at the threshold;
    Prometheus's defaults without a calibration."""
    from prometheus_client import Histogram

    if detector.calibration is None:
        return Histogram.DEFAULT_BUCKETS
    edges = set(np.quantile(detector.calibration.scores, SCORE_QUANTILES).tolist())
    if detector.threshold is not None:
        edges.add(float(detector.threshold))
    return (*sorted(edges), float("inf"))


class CountRequests:
    """ASGI middleware: every HTTP request's path, status and latency into ``metrics`` (a
    request that ends without an answer counts as status 500)."""

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), 500

        async def noted_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noted_send)
        finally:
            self.metrics.observe_request(scope["path"], status, time.perf_counter() - t0)
