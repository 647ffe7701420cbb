"""What the report shows of re-mined detectors (config section ``deployments``,
:mod:`clustermine.remine`): the record of one (its old-vs-new summary and its concept diff's
changes), the ``deployments`` table and the ``deployments`` figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clustermine.remine import RemineError


def deployment_record(model: str, deployment: str, summary: str | Path,
                      diff: str | Path) -> dict[str, Any]:  # fmt: skip
    """What the report's deployments table shows of one re-mined detector: its summary rows
    (old against new per test and benchmark) and its concept diff's changes."""
    from clustermine.text_lines import read_text

    def rows(path) -> list[list[str]]:
        lines = read_text(Path(path), "deployment file", RemineError).splitlines()
        return [line.split("\t") for line in lines[1:] if line]

    changes: dict[str, list[str]] = {}
    for name, change, *_ in rows(diff):
        changes.setdefault(change, []).append(name)
    return {
        "model": model,
        "deployment": deployment,
        "summary": [{"test": r[0], "benchmark": r[1], **{k: float(v) for k, v in zip(
            ("auroc_old", "auroc_new", "fpr95_old", "fpr95_new"), r[2:6])}}
            for r in rows(summary)],
        "changes": changes,
    }  # fmt: skip


def table_deployments(records, s):
    """The report's deployments table: every re-mined detector against its original on the
    ID set's benchmarks, with the names its concept diff adds and removes."""
    import pandas as pd

    from clustermine.tables import Table, _no_data

    name, title = "deployments", "Detectors re-mined from deployment images (old → new)"
    if not s.deployments:
        return _no_data(name, title, "no deployment in this configuration (config section "
                        "deployments: a detector re-mined from deployment images)")  # fmt: skip
    out = []
    for d in s.deployments:
        added, removed = d["changes"].get("added", []), d["changes"].get("removed", [])
        for r in d["summary"]:
            out.append({
                "model": d["model"], "deployment": d["deployment"], "ID test set": r["test"],
                "benchmark": r["benchmark"],
                # fractions, as every percent column of the report
                "AUROC old": r["auroc_old"] / 100, "AUROC new": r["auroc_new"] / 100,
                "FPR95 old": r["fpr95_old"] / 100, "FPR95 new": r["fpr95_new"] / 100,
                "kept": len(d["changes"].get("kept", [])),
                "added": f"{len(added)}: {', '.join(added[:10])}" if added else "0",
                "removed": f"{len(removed)}: {', '.join(removed[:10])}" if removed else "0",
            })  # fmt: skip
    frame = pd.DataFrame(out)
    metrics = ["AUROC old", "AUROC new", "FPR95 old", "FPR95 new"]
    return Table(
        name, title, frame, percent=tuple(metrics), counts=("kept",),
        description="Per deployment (config section deployments) and model: the detector "
        "re-mined from the deployment images against the detector it came from, on every "
        "(ID test set, benchmark) pair of its ID set (AUROC and FPR95 in percent, "
        f"{', '.join(metrics)}); kept, added and removed positives from its concept diff "
        "(results/{model}/deployments/). A benchmark whose concept arrived in the traffic "
        "is expected to lose AUROC: its images are now in-distribution.",
    )  # fmt: skip


def plot_deployments(inputs, path) -> None:
    """The report's deployments figure: per re-mined detector, the AUROC of the old and the
    new detector on each benchmark of its ID set's first test set, and the names its concept
    diff added and removed."""
    from clustermine.plots import _message, _save, plt

    title = "Detectors re-mined from deployment images: AUROC old and new"
    deployments = inputs.deployments
    if not deployments:
        return _message(path, title, "no deployment in this configuration (config section "
                        "deployments)")  # fmt: skip
    fig, axes = plt.subplots(len(deployments), 1, squeeze=False,
                             figsize=(7.5, 3.2 * len(deployments)))  # fmt: skip
    for ax, d in zip(axes[:, 0], deployments):
        rows = [r for r in d["summary"] if r["test"] == d["summary"][0]["test"]]
        x = np.arange(len(rows))
        for shift, key, label in ((-0.2, "auroc_old", "old"), (0.2, "auroc_new", "re-mined")):
            ax.bar(x + shift, [r[key] for r in rows], 0.4, label=label)
        ax.set_xticks(x, [r["benchmark"] for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("AUROC (%)")
        added, removed = d["changes"].get("added", []), d["changes"].get("removed", [])
        ax.set_title(f"{d['deployment']} ({d['model']}, ID test set {rows[0]['test']}): "
                     f"{len(added)} names added, {len(removed)} removed", fontsize=9)  # fmt: skip
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
