"""Paper-shaped result tables from the per-(model, ID set, method, ID test set) metrics files.

Every table is built as a :class:`Table` (a DataFrame plus which columns are better high or
low) and written three ways: TSV for programs, Markdown for pasting, HTML for the Snakemake
report. AUROC, FPR95, overlap, F1 and drops are shown in percent. The best value of a column
is marked within each group of rows (each model): **bold** in Markdown and HTML; in the TSV the
numbers stay plain and a last column ``best`` lists the columns in which that row is best,
separated by ``;`` (ties mark every tied row). A table the configuration cannot fill is still
written, holding a single ``note`` column that says what it needs, so output names stay fixed.

The output names and their builders are declared in :mod:`clustermine.catalog.report`;
docs/results.md says which paper table each one mirrors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from clustermine import catalog
from clustermine.cluster_analysis import LEARNED_LOSS_RATIO as _LEARNED_RATIO
from clustermine.report_settings import (  # noqa: F401 (the report's public names)
    SWEEP_KEYS,
    ReportSettings,
    _first_seen,
    _num,
    benchmark_frame,
    record_frame,
)
from clustermine.table_render import (  # noqa: F401
    RENDERERS,
    Table,
    better,
    table_html,
    table_markdown,
    table_tsv,
    write_table,
    write_text,
)


def _no_data(name: str, title: str, why: str, description: str = "") -> Table:
    return Table(name, title, pd.DataFrame(), note=why, description=description)


def _per_benchmark(
    bench: pd.DataFrame, benches: Sequence[str], index: Sequence[str]
) -> pd.DataFrame:
    """Rows ``index``, columns '<bench> AUROC', '<bench> FPR95' in ``benches`` order."""
    wide = bench.pivot_table(index=list(index), columns="benchmark",
                             values=["auroc", "fpr95"], aggfunc="first", sort=False)
    out = pd.DataFrame(index=wide.index)
    for b in benches:
        for metric, label in (("auroc", "AUROC"), ("fpr95", "FPR95")):
            out[f"{b} {label}"] = wide[(metric, b)] if (metric, b) in wide.columns else np.nan
    return out


def _order_rows(frame: pd.DataFrame, s: ReportSettings) -> pd.DataFrame:
    """Models in config order, then methods in config order (stable otherwise)."""
    orders = {}
    if "model" in frame:
        orders["model"] = s.model_order(frame["model"])
    if "method" in frame:
        orders["method"] = s.method_order(frame["method"])
    return _sort_by(frame, orders)


def _main_slice(bench: pd.DataFrame, s: ReportSettings) -> pd.DataFrame:
    if s.main_idset is None:
        return bench.iloc[0:0]
    test = s.main_test(s.main_idset)
    return bench[(bench.idset == s.main_idset) & (bench.testset == test)]


def mean_metrics(bench: pd.DataFrame, s: ReportSettings, keys: Sequence[str]) -> pd.DataFrame:
    """Mean AUROC/FPR95 over each ID set's main benchmarks (extra benchmarks left out)."""
    main = {i: set(s.main_benchmarks(i)) for i in set(bench.idset)}
    keep = [not main[i] or b in main[i] for i, b in zip(bench.idset, bench.benchmark)]
    means = bench[keep].groupby(list(keys), sort=False)[["auroc", "fpr95"]].mean()
    return means.rename(columns={"auroc": "mean AUROC", "fpr95": "mean FPR95"})


def _sort_by(frame: pd.DataFrame, orders: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Stable sort on columns by the given value orders (unknown values last)."""
    if frame.empty:
        return frame
    ranks = pd.DataFrame({
        f"_r{i}": frame[col].map({v: j for j, v in enumerate(order)}).fillna(len(order))
        for i, (col, order) in enumerate(orders.items())
    }, index=frame.index)
    idx = ranks.sort_values(list(ranks.columns), kind="stable").index
    return frame.loc[idx].reset_index(drop=True)


def table_ood_benchmarks(records, s: ReportSettings) -> Table:
    """Paper Table 1: per-benchmark AUROC/FPR95 and their means, main ID set and test set."""
    name, title = "ood_benchmarks", "OOD detection per benchmark (paper Table 1)"
    bench = _main_slice(benchmark_frame(records), s)
    if bench.empty:
        return _no_data(name, title, "no metrics for the main ID set's main test set")
    benches = [b for b in s.main_benchmarks(s.main_idset) if b in set(bench.benchmark)]
    benches = benches or _first_seen(bench.benchmark)
    keys = ["model", "method"]
    wide = _per_benchmark(bench[bench.benchmark.isin(benches)], benches, keys)
    wide = wide.join(mean_metrics(bench, s, keys)).reset_index()
    cols = [c for c in wide.columns if c not in keys]
    return Table(
        name, title, _order_rows(wide, s),
        better={c: better(c) for c in cols},
        percent=tuple(cols),
        description=f"ID set {s.main_idset}, ID test set {s.main_test(s.main_idset)}; "
                    "means over the ID set's main benchmarks.",
    )


def table_id_shift(records, s: ReportSettings) -> Table:
    """Paper Tables 2 and 9: mean AUROC on every ID test set and the drop under shift."""
    name, title = "id_shift", "Robustness to covariate shift of the ID test set (paper Tables 2, 9)"
    if s.main_idset is None:
        return _no_data(name, title, "no metrics")
    tests = list(s.idsets[s.main_idset].get("test") or [])
    bench = benchmark_frame(records)
    bench = bench[(bench.idset == s.main_idset) & bench.testset.isin(tests)]
    tests = [t for t in tests if t in set(bench.testset)]
    if len(tests) < 2:
        return _no_data(name, title, f"needs two or more ID test sets in idsets.{s.main_idset}."
                        "test (the first is the reference); this configuration has "
                        f"{len(tests)} with metrics")
    means = mean_metrics(bench, s, ["model", "method", "testset"])
    auroc = means["mean AUROC"].unstack("testset").reindex(columns=tests)
    fpr = means["mean FPR95"].unstack("testset").reindex(columns=tests)
    parts = {}
    for t in tests:  # AUROC and FPR95 side by side per ID test set (paper Table 9)
        parts[f"{t} AUROC"], parts[f"{t} FPR95"] = auroc[t], fpr[t]
    wide = pd.DataFrame(parts)
    wide["shifted mean AUROC"] = auroc[tests[1:]].mean(axis=1)
    wide["shifted mean FPR95"] = fpr[tests[1:]].mean(axis=1)
    wide["relative drop"] = (auroc[tests[0]] - wide["shifted mean AUROC"]) / auroc[tests[0]]
    wide = wide.reset_index()
    cols = [c for c in wide.columns if c not in ("model", "method")]
    return Table(
        name, title, _order_rows(wide, s), better={c: better(c) for c in cols},
        percent=tuple(cols),
        description=f"ID set {s.main_idset}; mean AUROC and FPR95 over its main benchmarks with "
                    "each ID test set as the in-distribution data; relative drop = (AUROC on "
                    f"{tests[0]} − shifted mean AUROC) / AUROC on {tests[0]}.",
    )


def _label_rows(records, s: ReportSettings, idsets: Sequence[str]) -> pd.DataFrame:
    """Per (model, idset, method) on the main test set: label quality and mean metrics."""
    rec = record_frame(records)
    if rec.empty:
        return rec
    rec = rec[rec.idset.isin(idsets)]
    rec = rec[[t == s.main_test(i) for i, t in zip(rec.idset, rec.testset)]]
    rec = _sort_by(rec, {"idset": list(idsets)})  # the main ID set's row wins duplicates
    bench = benchmark_frame([r for r in records if r["idset"] in idsets])
    means = mean_metrics(bench, s, ["model", "idset", "method", "testset"]).reset_index()
    return rec.drop(columns=["mean_auroc", "mean_fpr95"]).merge(
        means, on=["model", "idset", "method", "testset"], how="left"
    )


def table_corpora(records, s: ReportSettings) -> Table:
    """Paper Table 3: mined labels and AUROC per text corpus."""
    name, title = "corpora", "Text corpora: mined labels and OOD detection (paper Table 3)"
    idsets = s.comparable_idsets(vary="corpus")
    rows = _label_rows(records, s, idsets)
    rows = rows[rows.has_label_quality] if not rows.empty else rows
    if rows.empty:
        return _no_data(name, title, "no metrics with label quality for ID sets set up like "
                        f"'{s.main_idset}' (add ID sets that differ only in corpus)")
    rows = rows.assign(corpus=[s.idsets.get(i, {}).get("corpus", i) for i in rows.idset])
    frame = rows[["model", "corpus", "method", "lq_n_corpus", "lq_n_pos", "mean AUROC",
                  "mean FPR95", "lq_overlap", "lq_f1"]].rename(columns={
        "lq_n_corpus": "|Y_corpus|", "lq_n_pos": "|Y_pos|", "lq_overlap": "overlap",
        "lq_f1": "F1"})
    frame = frame.drop_duplicates(["model", "corpus", "method"])
    # With several corpora, a method run on one corpus only has nothing to compare.
    spread = frame.groupby(["model", "method"]).corpus.transform("nunique")
    per_model = frame.groupby("model").corpus.transform("nunique")
    frame = frame[(per_model < 2) | (spread > 1)]
    frame = _sort_by(frame, {
        "model": s.model_order(frame.model),
        "corpus": _first_seen(s.idsets.get(i, {}).get("corpus") for i in idsets),
        "method": s.method_order(frame.method),
    })
    return Table(
        name, title, frame,
        better={c: better(c) for c in ("mean AUROC", "mean FPR95", "overlap", "F1")},
        percent=("mean AUROC", "mean FPR95", "overlap", "F1"),
        counts=("|Y_corpus|", "|Y_pos|"),
        description=f"Corpora: {', '.join(_first_seen(frame.corpus))}; methods with label "
                    "sets; overlap = |Y_GT ∩ Y_pos| / |Y_GT|, F1 between Y_pos and Y_GT.",
    )


def table_positives(records, s: ReportSettings) -> Table:
    """Paper Table 4: label-set methods side by side with their number of positives."""
    name, title = "positives", "Number of positive labels and OOD detection (paper Table 4)"
    rows = _label_rows(records, s, s.comparable_idsets())
    rows = rows[rows.has_label_quality] if not rows.empty else rows
    if rows.empty:
        return _no_data(name, title, "no metrics with label quality (methods with label sets) "
                        f"for ID sets set up like '{s.main_idset}'")
    frame = rows[["model", "method", "labels", "lq_n_pos", "lq_n_neg", "mean AUROC",
                  "mean FPR95", "lq_overlap", "lq_f1", "lq_top1_text_sim"]].rename(columns={
        "lq_n_pos": "|Y_pos|", "lq_n_neg": "|Y_neg|", "lq_overlap": "overlap", "lq_f1": "F1",
        "lq_top1_text_sim": "top-1 sim"})
    frame = frame.drop_duplicates(["model", "method"])
    frame = _sort_by(frame, {
        "model": s.model_order(frame.model),
        "|Y_pos|": sorted(frame["|Y_pos|"].dropna().unique()),
        "method": s.method_order(frame.method),
    })
    return Table(
        name, title, frame,
        better={c: better(c) for c in ("mean AUROC", "mean FPR95", "overlap", "F1",
                                       "top-1 sim")},
        percent=("mean AUROC", "mean FPR95", "overlap", "F1"),
        counts=("|Y_pos|", "|Y_neg|"),
        description="Rows sorted by |Y_pos| so that methods with about equally many positives "
                    "sit together; top-1 sim = mean highest text-text cosine of a mined label to "
                    "Y_GT.",
    )


def table_all_benchmarks(records, s: ReportSettings) -> Table:
    """Paper Table 7: every OOD benchmark scored, the extra ones included."""
    name, title = "all_benchmarks", "All OOD benchmarks, extra ones included (paper Table 7)"
    bench = _main_slice(benchmark_frame(records), s)
    if bench.empty:
        return _no_data(name, title, "no metrics for the main ID set's main test set")
    main = s.main_benchmarks(s.main_idset)
    extra = s.extra_benchmarks(s.main_idset)
    seen = _first_seen(bench.benchmark)
    benches = [b for b in main + extra if b in seen] + [b for b in seen if b not in main + extra]
    keys = ["model", "method"]
    wide = _per_benchmark(bench, benches, keys)
    others = [b for b in benches if b not in main]
    if others:
        part = bench[bench.benchmark.isin(others)]
        m = part.groupby(keys, sort=False)[["auroc", "fpr95"]].mean()
        wide["extra mean AUROC"], wide["extra mean FPR95"] = m["auroc"], m["fpr95"]
    wide = wide.reset_index()
    cols = [c for c in wide.columns if c not in keys]
    return Table(
        name, title, _order_rows(wide, s),
        better={c: better(c) for c in cols}, percent=tuple(cols),
        description=(f"Extra benchmarks: {', '.join(others)}." if others else
                     "This configuration scores no benchmark beyond the main list, so this "
                     "table repeats Table 1 without means."),
    )


def table_plp(records, s: ReportSettings) -> Table:
    """Paper Table 8: pseudo-label probing on Y_GT and on mined labels ("+PLP")."""
    name, title = "plp", "Pseudo-label probing on given and mined labels (paper Table 8)"
    rows = _label_rows(records, s, [s.main_idset] if s.main_idset else [])
    probes = rows.score.isin(catalog.PROBE_SCORES) if not rows.empty else None
    if rows.empty or not probes.any():
        scores = ", ".join(repr(p) for p in catalog.PROBE_SCORES)
        return _no_data(name, title, f"no method with score {scores} in the main ID set")
    plp_labels = set(rows.loc[probes, "labels"])
    rows = rows[rows.labels.isin(plp_labels)]
    frame = rows[["model", "labels", "method", "score", "lq_n_pos", "mean AUROC",
                  "mean FPR95"]].rename(columns={"lq_n_pos": "|Y_pos|"})
    plp_methods = s.method_order(frame.loc[frame.score.isin(catalog.PROBE_SCORES), "method"])
    labels_order = _first_seen(s.methods.get(m, {}).get("labels") for m in plp_methods)
    frame = _sort_by(frame, {
        "model": s.model_order(frame.model),
        "labels": labels_order,
        "method": s.method_order(frame.method),
    })
    return Table(
        name, title, frame,
        better={c: better(c) for c in ("mean AUROC", "mean FPR95")},
        percent=("mean AUROC", "mean FPR95"),
        counts=("|Y_pos|",),
        description="Each PLP method next to the other methods that use the same label set.",
    )


# Ground-truth metrics of a cluster file (attribute → column), all higher = better.
CLUSTERING_METRICS = {
    "nmi": "NMI",
    "ari": "ARI",
    "hungarian_accuracy": "Hungarian acc",
    "overclustering_accuracy": "over-clustering acc",
    "per_class_accuracy": "per-class acc",
    "class_coverage": "classes with a cluster",
}
HEALTH_WORDS = {"not_learned": "NOT LEARNED", "all_warmup": "all warm-up",
                "concentrated": "concentrated"}


def clustering_record(
    model: str, dataset: str, clusterer: str, num_clusters: int, attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """One row of the clustering table: the clustering of ``dataset`` (an ID set's train
    images) by the clusterer slug at C clusters, from its cluster file's attributes
    (:func:`clustermine.clustering.io.read_cluster_attrs`)."""
    health = dict(attrs.get("health") or {})
    return {
        "model": model, "dataset": dataset, "clusterer": clusterer, "C": int(num_clusters),
        "method": attrs.get("clusterer"),
        **{key: _num(attrs.get(key)) for key in CLUSTERING_METRICS},
        "num_classes": _num(attrs.get("num_classes")),
        "nonempty_clusters": _num(health.get("nonempty_clusters",
                                             attrs.get("num_nonempty_clusters"))),
        "size_entropy_ratio": _num(health.get("size_entropy_ratio")),
        "loss_ratio": _num(health.get("loss_ratio")),
        "warnings": list(health["warnings"]) if "warnings" in health else None,
        "messages": list(health.get("messages") or []),
    }


def table_clustering(records, s: ReportSettings) -> Table:
    """The clustering benchmark of Adaloglou et al. (2023, 2024): every clusterer side by side
    at each C against the ID-train classes, with each clustering's health check."""
    name = "clustering"
    title = "Clustering of the ID-train images against their classes (TEMI, k-means, ...)"
    if not s.clusterings:
        return _no_data(name, title, "no clustering in this configuration (a label set with a "
                        "clusterer, or idsets.<idset>.cluster_sweep)")
    rows = pd.DataFrame(s.clusterings)
    health = ["not recorded" if w is None else "; ".join(HEALTH_WORDS.get(x, x) for x in w)
              or "ok" for w in rows.warnings]
    frame = pd.DataFrame({
        "model": rows.model, "dataset": rows.dataset, "C": rows.C, "clusterer": rows.clusterer,
        "method": rows.method,
        **{col: rows[key] for key, col in CLUSTERING_METRICS.items()},
        "K": rows.num_classes, "non-empty clusters": rows.nonempty_clusters,
        "size entropy / ln C": rows.size_entropy_ratio,
        "loss / uniform loss": rows.loss_ratio, "health": health,
    })
    frame = _sort_by(frame, {
        "model": s.model_order(frame.model),
        "dataset": _first_seen([*(i.get("train") for i in s.idsets.values()), *frame.dataset]),
        "C": sorted(frame.C.unique()),
        "clusterer": _first_seen(frame.clusterer),
    })
    failed = [f"{r.clusterer} C={r.C} ({r.model}, {r.dataset}): {'; '.join(r.messages)}"
              for r in rows.itertuples() if r.messages]
    description = (
        "Per model, ID-train set and C, every clusterer the configuration runs on it; against "
        "the classes "
        "where the images have them: NMI, ARI, one-to-one Hungarian accuracy, over-clustering "
        "accuracy (each extra cluster to its majority class), accuracy averaged per class and "
        "the share of classes that own a cluster (the class-imbalance view of Adaloglou et al., "
        "2024); K = classes. Health: size entropy of the clusters as a share of ln C (1 = "
        "balanced), TEMI's final best-head loss in multiples of the loss of uniform outputs "
        f"(below {_LEARNED_RATIO:g}: NOT LEARNED), and the warnings of the health check."
    )
    if failed:
        description += f" HEALTH CHECK FAILED for {len(failed)}: " + "; ".join(failed) + "."
    return Table(
        name, title, frame,
        better={col: better(col) for col in CLUSTERING_METRICS.values()},
        percent=tuple(CLUSTERING_METRICS.values()),
        counts=("C", "K", "non-empty clusters"),
        group_by=("model", "dataset", "C"),
        description=description,
    )


TableBuilder = Callable[[Sequence[Mapping[str, Any]], ReportSettings], Table]

def table_openood(records, s: ReportSettings) -> Table:
    """Paper Table 5 (OpenOOD v1.5): FPR95 and AUROC per benchmark, grouped as the ID set's
    ``benchmark_groups`` (near / far OOD), with each group's mean."""
    name, title = "openood", "OOD detection by benchmark group, OpenOOD v1.5 layout (paper Table 5)"
    grouped = [i for i, spec in s.idsets.items() if spec.get("benchmark_groups")]
    if not grouped:
        return _no_data(name, title, "needs an ID set with benchmark_groups (config/openood.yaml: "
                        "near and far OOD)")  # fmt: skip
    idset = s.main_idset if s.main_idset in grouped else grouped[0]
    groups = s.idsets[idset]["benchmark_groups"]
    bench = benchmark_frame(records)
    bench = bench[(bench.idset == idset) & (bench.testset == s.main_test(idset))]
    if bench.empty:
        return _no_data(name, title, f"no metrics for ID set {idset}")
    keys = ["model", "method"]
    parts = []
    for group, members in groups.items():
        wide = _per_benchmark(bench, members, keys)
        cols = [c for m in members for c in (f"{m} FPR95", f"{m} AUROC")]
        wide = wide[cols]
        wide[f"{group} mean FPR95"] = wide[[f"{m} FPR95" for m in members]].mean(axis=1)
        wide[f"{group} mean AUROC"] = wide[[f"{m} AUROC" for m in members]].mean(axis=1)
        parts.append(wide)
    frame = pd.concat(parts, axis=1).reset_index()
    cols = [c for c in frame.columns if c not in keys]
    return Table(
        name, title, _order_rows(frame, s),
        better={c: better(c) for c in cols},
        percent=tuple(cols),
        description=f"ID set {idset}, ID test set {s.main_test(idset)}; groups "
        + "; ".join(f"{g}: {', '.join(m)}" for g, m in groups.items())
        + f"; FPR95 convention {s.idsets[idset].get('fpr_convention', 'clip')}.",
    )


# Output name -> builder, in the order and with the names the catalog declares.
def _builder(target: str) -> TableBuilder:
    """The builder a catalog entry names (``module:function``)."""
    import importlib

    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


TABLES: dict[str, TableBuilder] = {
    name: _builder(target) for name, target in catalog.TABLES.items()
}
FORMATS = catalog.TABLE_FORMATS


def build_tables(
    records: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    clusterings: Sequence[Mapping[str, Any]] = (),
    deployments: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Table]:
    """Every table from the metrics ``records``, the :func:`clustering_record` rows and the
    :func:`clustermine.remine_report.deployment_record` rows."""
    s = ReportSettings.build(settings, records, clusterings)
    s.deployments = [dict(d) for d in deployments]
    return {name: builder(records, s) for name, builder in TABLES.items()}



def write_long(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Every number of every metrics file, one row per benchmark (fractions, not percent)."""
    bench = benchmark_frame(records)
    rec = record_frame(records).drop(columns=["mean_auroc", "mean_fpr95", "has_label_quality",
                                              "has_cluster_analysis"], errors="ignore")
    long = bench.merge(rec, on=["model", "idset", "method", "testset"], how="left")
    write_text(path, long.to_csv(sep="\t", index=False, float_format="%.6g", na_rep="nan",
                                 lineterminator="\n"))
