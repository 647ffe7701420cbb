"""The offline demo's own numbers, set against the bars it is meant to clear (docs/demo.md).

Three checks: the trained demo model's zero-shot accuracy on Fashion-MNIST with its ten class
names; how many of those classes ClusterMine's mined positives name (the class name itself or
a WordNet synonym: a name sharing a noun synset with it); and the AUROC of Eq. 1 with those
positives against the held-out digits. Missing a bar is reported, not an error: the demo's
numbers are shown as they are.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from clustermine.corpus import normalize_name

BARS = {"zero_shot_accuracy": 0.80, "classes_named": 8, "auroc": 0.95}


def noun_synsets(name: str, wordnet) -> set[str]:
    """Names of the WordNet noun synsets ``name`` (or each part of an ``a/b`` name) belongs to."""
    out = set()
    for part in name.split("/"):
        out |= {s.name() for s in wordnet.synsets(normalize_name(part).replace(" ", "_"), "n")}
    return out


def class_coverage(
    positives: Sequence[str], class_names: Sequence[str], wordnet=None
) -> dict[str, list[str]]:
    """For every class, the positives that name it: equal after normalising, or sharing a
    WordNet noun synset with it (synonyms such as "gym shoe" for "sneaker")."""
    if wordnet is None:
        from clustermine.wordnet import open_wordnet

        wordnet = open_wordnet()
    pos_synsets = {p: noun_synsets(p, wordnet) for p in positives}
    coverage = {}
    for cls in class_names:
        names = {normalize_name(part) for part in cls.split("/")} | {normalize_name(cls)}
        synsets = noun_synsets(cls, wordnet)
        coverage[cls] = [
            p for p in positives if normalize_name(p) in names or pos_synsets[p] & synsets
        ]
    return coverage


def demo_summary(
    training: Mapping[str, Any],
    positives: Sequence[str],
    class_names: Sequence[str],
    metrics: Mapping[str, Any],
    benchmark: str,
    wordnet=None,
) -> dict[str, Any]:
    """The demo's numbers and whether each clears its bar.

    ``training``: the demo model's training summary (its JSON file); ``metrics``: the metrics
    record of the ClusterMine method on the ID test set; ``benchmark``: the OOD set of the
    AUROC bar (the held-out digits).
    """
    if benchmark not in metrics["benchmarks"]:
        raise KeyError(
            f"benchmark {benchmark!r} is not among the metrics' benchmarks "
            f"{sorted(metrics['benchmarks'])}"
        )
    coverage = class_coverage(positives, class_names, wordnet)
    named = sum(bool(v) for v in coverage.values())
    zero_shot = training.get("zero_shot", {}).get("accuracy")
    auroc = metrics["benchmarks"][benchmark]["auroc"]
    checks = [
        {
            "check": "zero-shot accuracy of the demo model on the ID test images",
            "value": zero_shot,
            "bar": BARS["zero_shot_accuracy"],
        },
        {
            "check": f"ID classes named by the mined positives (of {len(class_names)})",
            "value": named,
            "bar": BARS["classes_named"],
        },
        {
            "check": f"AUROC of {metrics['method']} against {benchmark}",
            "value": auroc,
            "bar": BARS["auroc"],
        },
    ]
    for check in checks:
        check["passed"] = check["value"] is not None and check["value"] >= check["bar"]
    return {
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
        "method": metrics["method"],
        "testset": metrics["testset"],
        "positives": list(positives),
        "coverage": coverage,
        "benchmarks": {
            name: {"auroc": b["auroc"], "fpr95": b["fpr95"]}
            for name, b in metrics["benchmarks"].items()
        },
        "training": {
            k: training[k]
            for k in ("settings", "train_images", "train_seconds", "logit_scale", "zero_shot")
            if k in training
        },
    }


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a short Markdown page."""
    lines = ["# Offline demo: its numbers against its bars", ""]
    lines += ["| check | value | bar | |", "|---|---|---|---|"]
    for c in summary["checks"]:
        fraction = isinstance(c["bar"], float)
        value = _percent(c["value"]) if fraction else str(c["value"])
        bar = _percent(c["bar"]) if fraction else str(c["bar"])
        lines.append(f"| {c['check']} | {value} | ≥ {bar} | {'pass' if c['passed'] else 'BELOW'} |")
    lines += ["", f"ID classes and the mined positives that name them ({summary['method']}):", ""]
    for cls, names in summary["coverage"].items():
        lines.append(f"- {cls}: {', '.join(names) if names else '(none)'}")
    lines += ["", f"All {len(summary['positives'])} mined positives: "
              + ", ".join(summary["positives"]), ""]
    lines += [f"{summary['method']} on {summary['testset']} against each OOD set:", ""]
    lines += ["| OOD set | AUROC | FPR95 |", "|---|---|---|"]
    for name, b in summary["benchmarks"].items():
        lines.append(f"| {name} | {_percent(b['auroc'])} | {_percent(b['fpr95'])} |")
    return "\n".join(lines) + "\n"
