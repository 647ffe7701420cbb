"""The paper's figures from metrics files and label-set files (matplotlib, Agg backend).

One function per figure, all with the same signature ``(inputs, path)``, found by name in
:data:`PLOTS`. Each draws what the configuration produced: one model gives bars instead of
lines, a figure whose experiment the configuration lacks (no K/M/C sweep, no second prompt
set, no clustering) is still written, with a short message saying what it needs, so output
names stay fixed. docs/results.md says which paper figure each one mirrors.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clustermine import catalog  # noqa: E402
from clustermine.atomic import atomic_path  # noqa: E402
from clustermine.tables import (  # noqa: E402
    SWEEP_KEYS,
    ReportSettings,
    benchmark_frame,
    mean_metrics,
    record_frame,
)

# The per-positive column of the label-set TSV behind each label-quality histogram.
PER_LABEL_COLUMNS = {"top1_text_sim": "gt_sim", "wordnet_hops": "gt_hops"}


@dataclass
class PlotInputs:
    records: Sequence[Mapping[str, Any]]
    settings: ReportSettings
    # (model, idset, label set) → label-set table (clustermine.labelsets.read_label_table)
    label_tables: dict[tuple[str, str, str], pd.DataFrame] = field(default_factory=dict)
    # (model, idset, clusterer) → cluster-sweep table (cluster_analysis.read_sweep_table)
    sweeps: dict[tuple[str, str, str], pd.DataFrame] = field(default_factory=dict)
    # One clustermine.remine_report.deployment_record per re-mined detector.
    deployments: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def build(cls, records, settings: Mapping[str, Any] | None = None, label_tables=None,
              sweeps=None, deployments=()) -> PlotInputs:
        return cls(records, ReportSettings.build(settings, records), dict(label_tables or {}),
                   dict(sweeps or {}), [dict(d) for d in deployments])


# --- helpers -------------------------------------------------------------------------------


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _message(path: str | os.PathLike, title: str, message: str) -> None:
    """A figure that says why it has nothing to show."""
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=10,
            transform=ax.transAxes)
    _save(fig, path)


def _colors(keys: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    return {k: cmap(i % cmap.N) for i, k in enumerate(keys)}


def _legend(ax: plt.Axes, n: int) -> None:
    if n >= 1:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def _main_means(inputs: PlotInputs, idsets: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean AUROC/FPR95 (percent) per (model, idset, method) on each ID set's main test set."""
    s = inputs.settings
    bench = benchmark_frame(inputs.records)
    if idsets is not None:
        bench = bench[bench.idset.isin(idsets)]
    bench = bench[[t == s.main_test(i) for i, t in zip(bench.idset, bench.testset)]]
    if bench.empty:
        return pd.DataFrame(columns=["model", "idset", "method", "mean AUROC", "mean FPR95"])
    means = mean_metrics(bench, s, ["model", "idset", "method"]).reset_index()
    means[["mean AUROC", "mean FPR95"]] *= 100.0
    return means


def _tidy_y(ax: plt.Axes) -> None:
    """No offset notation, and no magnified noise when a curve is (nearly) flat."""
    lo, hi = ax.get_ylim()
    span = max(abs(lo), abs(hi), 1e-12)
    if hi - lo < 0.02 * span:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - 0.05 * span, mid + 0.05 * span)
    fmt = ax.yaxis.get_major_formatter()
    if isinstance(fmt, matplotlib.ticker.ScalarFormatter):
        fmt.set_useOffset(False)


def _log_x(ax: plt.Axes, values: Sequence[float]) -> None:
    vals = sorted({v for v in values if v and v > 0})
    if vals and max(vals) / min(vals) >= 8:
        ax.set_xscale("log")
        # Ticks at the values themselves, written plainly (C = 500, 1000, ... not 5×10²).
        ax.set_xticks(vals, [f"{v:g}" for v in vals])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


# --- figures -------------------------------------------------------------------------------


def plot_auroc_by_model(inputs: PlotInputs, path) -> None:
    """Paper Fig. 3: mean AUROC of every method for every model (main ID set and test set)."""
    s, title = inputs.settings, "Mean AUROC per method across models"
    means = _main_means(inputs, [s.main_idset] if s.main_idset else [])
    if means.empty:
        return _message(path, title, "no metrics for the main ID set's main test set")
    models = s.model_order(means.model)
    methods = s.method_order(means.method)
    colors = _colors(methods)
    if len(models) == 1:
        part = means.set_index("method").loc[methods, "mean AUROC"].sort_values()
        fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(part)))
        ax.barh(part.index, part.values, color=[colors[m] for m in part.index])
        for y, v in enumerate(part.values):
            ax.text(v, y, f" {v:.1f}", va="center", fontsize=8)
        lo = max(0.0, float(np.nanmin(part.values)) - 10)
        ax.set_xlim(lo, min(100.0, float(np.nanmax(part.values)) + 6))
        ax.set_xlabel("mean AUROC (%)")
        ax.set_title(f"{title} ({models[0]})")
    else:
        fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(models) + 3), 4.2))
        x = np.arange(len(models))
        for m in methods:
            part = means[means.method == m].set_index("model")["mean AUROC"]
            ax.plot(x, [part.get(k, np.nan) for k in models], "o-", ms=4, lw=1.2,
                    color=colors[m], label=m)
        ax.set_xticks(x, models, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("mean AUROC (%)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        _legend(ax, len(methods))
    _save(fig, path)


def plot_id_shift(inputs: PlotInputs, path) -> None:
    """Paper Fig. 4: AUROC with each ID test set and its relative drop (main model)."""
    s, title = inputs.settings, "AUROC under covariate shift of the ID test set"
    if s.main_idset is None:
        return _message(path, title, "no metrics")
    tests = list(s.idsets[s.main_idset].get("test") or [])
    bench = benchmark_frame(inputs.records)
    bench = bench[(bench.idset == s.main_idset) & (bench.model == s.main_model)
                  & bench.testset.isin(tests)]
    if bench.empty:
        return _message(path, title, f"no metrics for model {s.main_model} on {s.main_idset}")
    tests = [t for t in tests if t in set(bench.testset)]
    means = mean_metrics(bench, s, ["method", "testset"])["mean AUROC"].unstack("testset") * 100
    means = means.reindex(columns=tests)
    # One row per method (labelled on the axis, so any number of methods stays readable),
    # one bar per ID test set; the methods in the report's order, top to bottom.
    methods = s.method_order(means.index)[::-1]
    colors = _colors(tests)
    y = np.arange(len(methods))
    height = 0.8 / len(tests)
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(11.0, 1.4 + 0.22 * len(methods)
                                                          * max(1, len(tests) - 1)))  # fmt: skip
    for j, t in enumerate(tests):
        axes[0].barh(y - (j - (len(tests) - 1) / 2) * height, means.loc[methods, t].to_numpy(),
                     height, color=colors[t], label=t)  # fmt: skip
    axes[0].set_yticks(y, methods, fontsize=8)
    axes[0].set_xlabel("mean AUROC (%)")
    axes[0].set_title(f"{s.main_model}: ID test sets", fontsize=10)
    axes[0].grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.04))
    if len(tests) < 2:
        axes[1].set_axis_off()
        axes[1].text(0.5, 0.5, "one ID test set:\nno shift to compare", ha="center",
                     va="center", transform=axes[1].transAxes)
    else:
        drop = means.iloc[:, 1:].rsub(means.iloc[:, 0], axis=0).div(means.iloc[:, 0], axis=0)
        shifted = tests[1:]
        height = 0.8 / len(shifted)
        for j, t in enumerate(shifted):
            axes[1].barh(y - (j - (len(shifted) - 1) / 2) * height,
                         100 * drop.loc[methods, t].to_numpy(), height, color=colors[t],
                         label=t)  # fmt: skip
        axes[1].axvline(0, color="black", lw=0.6)
        axes[1].set_xlabel(f"relative AUROC drop vs {tests[0]} (%)")
        axes[1].set_title("relative drop (lower is more robust)", fontsize=10)
        axes[1].grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def _per_label(frame: pd.DataFrame, what: str) -> np.ndarray | None:
    col = PER_LABEL_COLUMNS[what]
    if col not in frame.columns:
        return None
    vals = frame.loc[frame.role == "pos", col].to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    return vals if len(vals) else None


def plot_label_quality(inputs: PlotInputs, path) -> None:
    """Paper Fig. 5: how close mined labels are to Y_GT (main model and ID set)."""
    s, title = inputs.settings, "Quality of the positive labels"
    rec = record_frame(inputs.records)
    if not rec.empty:
        rec = rec[(rec.model == s.main_model) & (rec.idset == s.main_idset)
                  & rec.has_label_quality]
        rec = rec[[t == s.main_test(i) for i, t in zip(rec.idset, rec.testset)]]
    tables = {ls: t for (model, idset, ls), t in inputs.label_tables.items()
              if model == s.main_model and idset == s.main_idset}
    label_sets = list(dict.fromkeys([*tables, *(rec.labels if not rec.empty else [])]))
    colors = _colors([str(x) for x in label_sets])
    panels = []
    for what, xlabel in (("top1_text_sim", "top-1 text similarity to Y_GT"),
                         ("wordnet_hops", "WordNet hops to the nearest Y_GT synset")):
        per = {ls: v for ls, t in tables.items() if (v := _per_label(t, what)) is not None}
        if per:
            panels.append(("hist", xlabel, per))
            continue
        col = f"lq_{what}"
        summary = {} if rec.empty else {  # quality belongs to the label set, not the score
            str(r.labels): getattr(r, col) for r in rec.drop_duplicates("labels").itertuples()
            if np.isfinite(getattr(r, col))}
        if summary:
            panels.append(("bars", xlabel, summary))
    votes = {}
    for ls, t in tables.items():
        if "votes" in t.columns:
            v = t.loc[t.role == "pos", "votes"].to_numpy(dtype=float)
            v = v[np.isfinite(v) & (v >= 0)]
            if len(v):
                votes[ls] = v
    if votes:
        panels.append(("votes", "votes per positive label (clusters or images)", votes))
    if not panels:
        return _message(path, title, "no label quality in the metrics and no per-label "
                        f"numbers in the label sets of {s.main_model} / {s.main_idset}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.5, 3.8))
    axes = np.atleast_1d(axes)
    for ax, (kind, xlabel, data) in zip(axes, panels):
        if kind == "bars":
            names = list(data)
            ax.barh(names, [data[n] for n in names], color="tab:blue")
            ax.set_xlabel(f"mean {xlabel}", fontsize=9)
            ax.tick_params(axis="y", labelsize=8)
            ax.set_title("mean per label set", fontsize=9)
            continue
        lo = min(float(v.min()) for v in data.values())
        hi = max(float(v.max()) for v in data.values())
        if kind == "votes":
            bins = np.unique(np.geomspace(max(lo, 1.0), max(hi, 2.0), 25).round())
            ax.set_xscale("log")
        elif what_is_integer(data):
            bins = np.arange(math.floor(lo), math.ceil(hi) + 2) - 0.5
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 25)
        for ls, vals in data.items():
            # Shares, not counts: label sets of 10 and of 500 names on one scale.
            ax.hist(vals, bins=bins, weights=np.full(len(vals), 1.0 / len(vals)),
                    histtype="step", lw=1.5, color=colors.get(ls), label=f"{ls} (n={len(vals)})")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("share of the label set's positives")
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"{title} ({s.main_model}, {s.main_idset})")
    fig.tight_layout()
    _save(fig, path)


def what_is_integer(data: Mapping[str, np.ndarray]) -> bool:
    return all(np.allclose(v, np.round(v)) for v in data.values())


def sweep_families(inputs: PlotInputs, key: str) -> list[pd.DataFrame]:
    """Groups of methods whose settings differ only in sweep key ``key`` (K, M or C), per
    model and setup (ID sets set up alike are pooled, so a sweep ID set joins the main one's
    default value), each with ≥ 2 values: columns value, method, mean AUROC, |Y_pos|."""
    s = inputs.settings
    means = _main_means(inputs)
    rec = record_frame(inputs.records)
    if means.empty:
        return []
    n_pos = {(r.model, r.idset, r.method): r.lq_n_pos for r in rec.itertuples()}
    means["value"] = [s.sweep_value(m, key) for m in means.method]
    means = means[means.value.notna()]
    if means.empty:
        return []
    means["family"] = [s.settings_without(m, key) for m in means.method]
    means["|Y_pos|"] = [n_pos.get(k, np.nan) for k in zip(means.model, means.idset,
                                                           means.method)]
    means["setup"] = [json.dumps(s.setup_of(i), sort_keys=True) for i in means.idset]
    means = means.assign(_main=means.idset != s.main_idset).sort_values("_main", kind="stable")
    families = []
    for _, part in means.groupby(["model", "setup", "family"], sort=False):
        part = part.drop_duplicates("value").astype({"value": float}).sort_values("value")
        if len(part) >= 2:
            families.append(part.drop(columns=["_main", "setup"]))
    return families


def _clusterer_of(label_set: dict) -> str | None:
    """The clusterer slug a label set's miner votes on (its key of role clusterer), if any."""
    if label_set.get("miner") not in catalog.MINERS:
        return None
    return catalog.miner(label_set["miner"]).value_of("clusterer", label_set)


def _family_label(part: pd.DataFrame, s: ReportSettings, n_models: int) -> str:
    method = part.method.iloc[0]
    ls = s.label_set(method)
    what = ls.get("miner") or s.methods.get(method, {}).get("labels") or method
    clusterer = _clusterer_of(ls)
    extra = [clusterer] if clusterer else []
    score = s.methods.get(method, {}).get("score")
    extra += [score] if score and score != catalog.PLAIN_SCORE else []
    label = what + (f" ({', '.join(map(str, extra))})" if extra else "")
    return f"{part.model.iloc[0]}: {label}" if n_models > 1 else label


def plot_sensitivity(inputs: PlotInputs, path) -> None:
    """Paper Fig. 6: AUROC and |Y_pos| against K (negatives), M (min votes) and C (clusters)."""
    s, title = inputs.settings, "Sensitivity to K, M and C"
    found = {k: fams for k in SWEEP_KEYS if (fams := sweep_families(inputs, k))}
    if not found:
        axes = ", ".join(f"{axis} ({' or '.join(keys)})" for axis, keys in SWEEP_KEYS.items())
        return _message(path, title, "no sweep in this configuration: add methods whose label "
                        f"sets differ only in one of {axes}")
    names = catalog.AXES
    fig, axes = plt.subplots(2, len(found), figsize=(4.6 * len(found) + 1.5, 6.4),
                             squeeze=False)
    for j, (key, fams) in enumerate(found.items()):
        n_models = len({f.model.iloc[0] for f in fams})
        for part in fams:
            label = _family_label(part, s, n_models)
            axes[0, j].plot(part.value, part["mean AUROC"], "o-", ms=4, label=label)
            axes[1, j].plot(part.value, part["|Y_pos|"], "o-", ms=4, label=label)
        values = [v for f in fams for v in f.value]
        for ax in axes[:, j]:
            _log_x(ax, values)
            _tidy_y(ax)
            ax.grid(alpha=0.3)
        axes[0, j].set_title(names[key], fontsize=10)
        axes[1, j].set_xlabel(names[key])
        axes[0, j].legend(fontsize=7, frameon=False)
    axes[0, 0].set_ylabel("mean AUROC (%)")
    axes[1, 0].set_ylabel("|Y_pos|")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


# (column in sweep tables, column in metrics records, panel title)
CLUSTER_PANELS = (
    ("num_ypos", "lq_n_pos", "|Y_pos|"),
    ("ypos_per_cluster", "ca_ypos_over_C", "|Y_pos| / C"),
    ("purity", "ca_purity", "purity of zero-shot labels"),
    ("entropy_nats", "ca_entropy", "entropy of zero-shot labels (nats)"),
    ("redundancy", "ca_redundancy", "redundancy (Y_pos voted > once)"),
)


def plot_cluster_analysis(inputs: PlotInputs, path) -> None:
    """Paper Fig. 7: |Y_pos|, |Y_pos|/C, purity, entropy and redundancy against C, from the
    cluster sweeps (cluster_sweep) and from the cluster-based label sets of the metrics."""
    s, title = inputs.settings, "Cluster analysis against the number of clusters C"
    lines = []  # (label, C values, {panel column: values}, elbow C or None)
    rec = record_frame(inputs.records)
    if not rec.empty:
        rec = rec[rec.has_cluster_analysis & rec.ca_C.notna()].drop_duplicates(["model", "labels"])
    n_models = len({k[0] for k in inputs.sweeps} | set(rec.model if not rec.empty else []))
    for (model, idset, clusterer), sweep in inputs.sweeps.items():
        sweep = sweep.sort_values("C")
        cols = {p[0]: sweep[p[0]].to_numpy(float) for p in CLUSTER_PANELS if p[0] in sweep}
        elbow = sweep.loc[sweep["elbow"] == 1, "C"] if "elbow" in sweep else []
        prefix = f"{model}: " if n_models > 1 else ""
        lines.append((f"{prefix}{clusterer} sweep", sweep.C.to_numpy(float), cols,
                      float(elbow.iloc[0]) if len(elbow) else None))
    if not rec.empty:
        rec = rec.assign(clusterer=[_clusterer_of(s.label_set(m)) or "clusters"
                                    for m in rec.method])
        for (model, clusterer), part in rec.groupby(["model", "clusterer"], sort=False):
            part = part.drop_duplicates("ca_C").sort_values("ca_C")
            prefix = f"{model}: " if n_models > 1 else ""
            cols = {p[0]: part[p[1]].to_numpy(float) for p in CLUSTER_PANELS}
            lines.append((f"{prefix}{clusterer} label sets", part.ca_C.to_numpy(float),
                          cols, None))
    if not lines:
        return _message(path, title, "no cluster sweep (cluster_sweep) and no method with a "
                        "cluster-based label set (miner clustermine)")
    fig, axes = plt.subplots(1, len(CLUSTER_PANELS), figsize=(3.6 * len(CLUSTER_PANELS), 3.6))
    all_c = [c for _, cs, _, _ in lines for c in cs]
    for i, (label, cs, cols, elbow) in enumerate(lines):
        style = "o-" if "sweep" in label else "s--"
        color = plt.get_cmap("tab10")(i % 10)
        for ax, (col, _, _) in zip(axes, CLUSTER_PANELS):
            if col in cols:
                ax.plot(cs, cols[col], style, ms=4, color=color, label=label)
        if elbow is not None and "num_ypos" in cols:
            y = cols["num_ypos"][list(cs).index(elbow)]
            axes[0].plot([elbow], [y], "*", ms=13, color=color, label=f"elbow C={elbow:g}")
    for ax, (_, _, name) in zip(axes, CLUSTER_PANELS):
        _log_x(ax, all_c)
        _tidy_y(ax)
        ax.set_xlabel("C")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_prompts(inputs: PlotInputs, path) -> None:
    """Paper Fig. 8: mean AUROC with each prompt set (ID sets differing only in prompts)."""
    s, title = inputs.settings, "Sensitivity to the prompt set"
    idsets = s.comparable_idsets(vary="prompts")
    means = _main_means(inputs, idsets)
    means = means[means.model == s.main_model]
    if means.empty:
        return _message(path, title, f"no metrics for model {s.main_model}")
    means = means.assign(prompts=[s.idsets.get(i, {}).get("prompts", "simple")
                                  for i in means.idset])
    means = means.drop_duplicates(["prompts", "method"])
    prompts = list(dict.fromkeys(means.prompts))
    if len(prompts) > 1:  # a method seen with one prompt set only says nothing here
        shared = means.groupby("method").prompts.nunique()
        means = means[means.method.isin(shared[shared > 1].index)]
    methods = s.method_order(means.method)
    colors = _colors(prompts)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.35 * len(methods) * len(prompts) + 2.5), 4.0))
    width = 0.8 / len(prompts)
    x = np.arange(len(methods))
    for j, p in enumerate(prompts):
        part = means[means.prompts == p].set_index("method")["mean AUROC"]
        ax.bar(x + (j - (len(prompts) - 1) / 2) * width,
               [part.get(m, np.nan) for m in methods], width, color=colors[p], label=p)
    ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
    vals = means["mean AUROC"].to_numpy()
    ax.set_ylim(max(0.0, float(np.nanmin(vals)) - 10), min(100.0, float(np.nanmax(vals)) + 5))
    ax.set_ylabel("mean AUROC (%)")
    note = "" if len(prompts) > 1 else " (one prompt set configured)"
    ax.set_title(f"{title}: {s.main_model}{note}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="prompts", fontsize=8, frameon=False, loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


Plotter = Callable[[PlotInputs, Any], None]

# Output name -> plotter, in the order and with the names the catalog declares.
def _plotter(target: str) -> Plotter:
    """The plotter a catalog entry names (``module:function``)."""
    import importlib

    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


PLOTS: dict[str, Plotter] = {name: _plotter(target) for name, target in catalog.PLOTS.items()}
