"""What the report's tables and figures read: the metrics records as data frames, and the
part of the configuration they need (:class:`ReportSettings`), built by
:meth:`clustermine.config.WorkflowConfig.report_settings` in the workflow and inferred from the
records where a piece is missing."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from clustermine import catalog

# The label-set parameters on each sweep axis (K, M, C), as the catalog declares them.
SWEEP_KEYS: dict[str, tuple[str, ...]] = catalog.sweep_axes()



def _num(value: Any) -> float:
    return float(value) if value is not None else math.nan


def benchmark_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long format: one row per (model, idset, method, testset, benchmark)."""
    rows = [
        {
            "model": r["model"], "idset": r["idset"], "method": r["method"],
            "testset": r["testset"], "benchmark": bench,
            "auroc": _num(v.get("auroc")), "fpr95": _num(v.get("fpr95")),
            "n_id": v.get("n_id"), "n_ood": v.get("n_ood"),
        }
        for r in records
        for bench, v in r["benchmarks"].items()
    ]
    cols = ["model", "idset", "method", "testset", "benchmark", "auroc", "fpr95", "n_id", "n_ood"]
    return pd.DataFrame(rows, columns=cols)


RECORD_KEYS = ["model", "idset", "method", "testset", "score", "labels"]


def record_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per metrics file: identifiers, the file's own means, label quality, clusters."""
    rows = []
    for r in records:
        lq = r.get("label_quality") or {}
        ca = r.get("cluster_analysis") or {}
        mean = r.get("mean") or {}
        rows.append({
            "model": r["model"], "idset": r["idset"], "method": r["method"],
            "testset": r["testset"], "score": r.get("score"), "labels": r.get("labels"),
            "tau": _num(r.get("tau")),
            "mean_auroc": _num(mean.get("auroc")), "mean_fpr95": _num(mean.get("fpr95")),
            **{f"lq_{k}": _num(lq.get(k)) for k in
               ("n_pos", "n_neg", "n_corpus", "overlap", "f1", "top1_text_sim", "wordnet_hops")},
            **{f"ca_{k}": _num(ca.get(k)) for k in
               ("C", "purity", "entropy", "redundancy", "ypos_over_C")},
            "has_label_quality": bool(lq), "has_cluster_analysis": bool(ca),
        })
    # With no records the identifier columns still exist, so joins on them hold.
    return pd.DataFrame(rows, columns=None if rows else RECORD_KEYS)


def _first_seen(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


@dataclass
class ReportSettings:
    """The part of the configuration the tables and plots need.

    ``idsets``: slug → {train, test, corpus, prompts, benchmarks, extra_benchmarks, methods};
    ``methods``: slug → the method's entry with its label set's entry under ``label_set``.
    Missing pieces are inferred from the metrics records (order of appearance).
    """

    models: list[str] = field(default_factory=list)
    idsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    main_model: str | None = None
    main_idset: str | None = None
    # One :func:`clustering_record` per cluster file the clustering table shows.
    clusterings: list[dict[str, Any]] = field(default_factory=list)
    # One clustermine.remine_report.deployment_record per re-mined detector (deployments table).
    deployments: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Mapping[str, Any] | None,
        records: Sequence[Mapping[str, Any]],
        clusterings: Sequence[Mapping[str, Any]] = (),
    ) -> ReportSettings:
        s = dict(settings or {})
        models = list(s.get("models") or [])
        models += [m for m in _first_seen(r["model"] for r in records) if m not in models]
        idsets = {k: dict(v) for k, v in (s.get("idsets") or {}).items()}
        for idset in _first_seen(r["idset"] for r in records):
            spec = idsets.setdefault(idset, {})
            seen = [r for r in records if r["idset"] == idset]
            spec.setdefault("test", _first_seen(r["testset"] for r in seen))
            spec.setdefault(
                "benchmarks", _first_seen(b for r in seen for b in r["benchmarks"])
            )
            spec.setdefault("methods", _first_seen(r["method"] for r in seen))
        methods = {k: dict(v) for k, v in (s.get("methods") or {}).items()}
        for r in records:
            methods.setdefault(r["method"], {"score": r.get("score"), "labels": r.get("labels")})
        main_idset = s.get("main_idset") or (next(iter(idsets)) if idsets else None)
        main_model = s.get("main_model") or (models[0] if models else None)
        return cls(models, idsets, methods, main_model, main_idset, [dict(c) for c in clusterings])

    def main_test(self, idset: str) -> str | None:
        tests = self.idsets.get(idset, {}).get("test") or []
        return tests[0] if tests else None

    def main_benchmarks(self, idset: str) -> list[str]:
        return list(self.idsets.get(idset, {}).get("benchmarks") or [])

    def extra_benchmarks(self, idset: str) -> list[str]:
        return list(self.idsets.get(idset, {}).get("extra_benchmarks") or [])

    def method_order(self, methods: Iterable[str]) -> list[str]:
        known = list(self.methods)
        return sorted(set(methods), key=lambda m: (known.index(m) if m in known else len(known), m))

    def model_order(self, models: Iterable[str]) -> list[str]:
        return sorted(set(models), key=lambda m: (self.models.index(m)
                                                  if m in self.models else len(self.models), m))

    def setup_of(self, idset: str) -> dict[str, Any]:
        """What makes two ID sets' numbers comparable: data, corpus, prompts, benchmarks."""
        spec = self.idsets.get(idset, {})
        return {
            "train": spec.get("train"),
            "test": self.main_test(idset),
            "corpus": spec.get("corpus"),
            "prompts": spec.get("prompts", "simple"),
            "benchmarks": tuple(sorted(self.main_benchmarks(idset))),
        }

    def comparable_idsets(self, vary: str | None = None) -> list[str]:
        """ID sets set up like the main one except, possibly, in ``vary`` (main first)."""
        if self.main_idset is None:
            return []
        ref = self.setup_of(self.main_idset)
        out = []
        for idset in self.idsets:
            other = self.setup_of(idset)
            if all(other[k] == ref[k] for k in ref if k != vary):
                out.append(idset)
        return sorted(out, key=lambda i: i != self.main_idset)

    def label_set(self, method: str) -> dict[str, Any]:
        return dict(self.methods.get(method, {}).get("label_set") or {})

    def sweep_value(self, method: str, key: str) -> Any:
        """The method's value of sweep key ``key`` (K, M or C), None when it has none."""
        ls = self.label_set(method)
        for name in SWEEP_KEYS[key]:
            if name in ls:
                return ls[name]
        return None

    def settings_without(self, method: str, key: str) -> str:
        """The method's settings minus sweep key ``key`` and slugs, as a comparable string."""
        spec = {k: v for k, v in self.methods.get(method, {}).items()
                if k not in ("labels", "label_set")}
        ls = {k: v for k, v in self.label_set(method).items() if k not in SWEEP_KEYS[key]}
        return json.dumps({"method": spec, "label_set": ls}, sort_keys=True, default=str)
