"""Result tables and figures from synthetic metrics files: right cells, best marks, files."""

from __future__ import annotations

import importlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from clustermine import catalog
from clustermine.labelsets import LabelSetFileError, positive_names, read_label_table
from clustermine import metrics as M
from clustermine import plots as P
from clustermine import tables as T

REPO = Path(__file__).resolve().parents[1]
MAIN = ["o1", "o2"]
EXTRA = ["x1"]
LQ_KEYS = ("n_pos", "n_neg", "n_corpus", "overlap", "f1", "top1_text_sim", "wordnet_hops")


def record(model, idset, method, testset, aurocs, *, fprs=None, score="eq1", labels="gt",
           n_pos=None, C=None):
    fprs = fprs or {b: 1.0 - a for b, a in aurocs.items()}
    lq = None if n_pos is None else dict(zip(LQ_KEYS, (n_pos, 100 - n_pos, 100, 0.5, 0.4,
                                                       0.8, 2.0)))
    ca = None if C is None else {"C": C, "purity": 0.5 + C / 1000, "entropy": 1.0 - C / 1000,
                                 "redundancy": 0.1 + C / 2000, "ypos_over_C": 0.5}
    return {
        "model": model, "idset": idset, "method": method, "testset": testset,
        "score": score, "labels": labels, "params": {}, "tau": 0.01, "fpr_convention": "clip",
        "benchmarks": {b: {"auroc": a, "fpr95": fprs[b], "n_id": 10, "n_ood": 10}
                       for b, a in aurocs.items()},
        "mean": {"auroc": float(np.mean(list(aurocs.values()))),
                 "fpr95": float(np.mean(list(fprs.values())))},
        "label_quality": lq, "cluster_analysis": ca,
    }


METHODS = {
    "mcm": {"score": "mcm", "labels": "gt", "label_set": {"miner": "gt"}},
    "cm": {"score": "eq1", "labels": "cm", "tau_factor": 0.1,
           "label_set": {"miner": "clustermine", "clusterer": "temi", "C": 40}},
    "cm20": {"score": "eq1", "labels": "cm20", "tau_factor": 0.1,
             "label_set": {"miner": "clustermine", "clusterer": "temi", "C": 20}},
    "cm80": {"score": "eq1", "labels": "cm80", "tau_factor": 0.1,
             "label_set": {"miner": "clustermine", "clusterer": "temi", "C": 80}},
    "cm-plp": {"score": "plp", "labels": "cm", "epochs": 5,
               "label_set": {"miner": "clustermine", "clusterer": "temi", "C": 40}},
}


def settings(tests=("val", "shift")):
    base = {"train": "tr", "corpus": "wn", "prompts": "simple", "benchmarks": MAIN}
    return {
        "models": ["m1", "m2"],
        "main_model": "m1",
        "main_idset": "main",
        "methods": METHODS,
        "idsets": {
            "main": {**base, "test": list(tests), "extra_benchmarks": EXTRA,
                     "methods": ["mcm", "cm", "cm-plp"]},
            "sweep": {**base, "test": ["val"], "methods": ["cm20", "cm80"]},
            "words": {**base, "corpus": "words", "test": ["val"], "methods": ["cm"]},
            "openai": {**base, "prompts": "openai", "test": ["val"], "methods": ["mcm", "cm"]},
        },
    }


def grid(tests=("val", "shift")):
    """Every model × method of the main ID set, plus the ablation ID sets for m1.
    AUROC on o1 = 0.60 + 0.1·method rank + 0.01·model rank − 0.05 under shift; o2 = o1 − 0.2;
    the extra benchmark x1 = 0.30 (must not enter the means)."""
    recs = []
    for mi, model in enumerate(["m1", "m2"]):
        for k, method in enumerate(["mcm", "cm", "cm-plp"]):
            for ti, test in enumerate(tests):
                a1 = 0.60 + 0.1 * k + 0.01 * mi - 0.05 * ti
                spec = METHODS[method]
                recs.append(record(model, "main", method, test, {"o1": a1, "o2": a1 - 0.2,
                                                                 "x1": 0.30},
                                   score=spec["score"], labels=spec["labels"], n_pos=10 + k,
                                   C=spec["label_set"].get("C")))
    for method, a in (("cm20", 0.55), ("cm80", 0.75)):
        C = METHODS[method]["label_set"]["C"]
        recs.append(record("m1", "sweep", method, "val", {"o1": a, "o2": a - 0.2},
                           labels=method, n_pos=C // 2, C=C))
    recs.append(record("m1", "words", "cm", "val", {"o1": 0.5, "o2": 0.3}, labels="cm",
                       n_pos=7, C=40))
    recs.append(record("m1", "openai", "mcm", "val", {"o1": 0.58, "o2": 0.4}, n_pos=3))
    recs.append(record("m1", "openai", "cm", "val", {"o1": 0.62, "o2": 0.5}, labels="cm",
                       n_pos=9, C=40))
    return recs


def write_records(tmp_path, recs):
    """One metrics file per detector (model, ID set, method), its records in the given order."""
    files: dict[tuple, list] = {}
    for r in recs:
        files.setdefault((r["model"], r["idset"], r["method"]), []).append(r)
    paths = []
    for (model, idset, method), records in files.items():
        path = tmp_path / "results" / model / "metrics" / f"{idset}.{method}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        M.write_metrics(path, records)
        paths.append(path)
    return paths


def test_read_metrics_checks_files(tmp_path):
    recs = grid()
    paths = write_records(tmp_path, recs)
    assert len(paths) < len(recs)  # some detectors have several ID test sets
    # Every record comes back, each once, tagged with its file.
    back = M.read_metrics(paths)
    assert sorted(json.dumps({k: v for k, v in r.items() if k != "_path"}, sort_keys=True)
                  for r in back) == sorted(json.dumps(r, sort_keys=True) for r in recs)
    assert all(r["_path"].endswith(f"{r['idset']}.{r['method']}.json") for r in back)
    with pytest.raises(M.MetricsFileError, match="missing.json: metrics file does not exist"):
        M.read_metrics([tmp_path / "missing.json"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(M.MetricsFileError, match="bad.json: not valid JSON"):
        M.read_metrics([tmp_path / "bad.json"])
    (tmp_path / "latin.json").write_bytes(b'{"records": ["caf\xe9"]}')
    with pytest.raises(M.MetricsFileError, match="latin.json: not valid JSON"):
        M.read_metrics([tmp_path / "latin.json"])
    for name, content in [("old.json", recs[0]), ("empty.json", {"records": []}),
                          ("list.json", [recs[0]])]:
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(M.MetricsFileError, match=rf"{name}: not a metrics file.*records"):
            M.read_metrics([tmp_path / name])
    (tmp_path / "short.json").write_text(
        json.dumps({"records": [recs[0], {"model": "m", "benchmarks": {}}]}))
    with pytest.raises(M.MetricsFileError, match=r"short.json: record 1: not a metrics .*idset"):
        M.read_metrics([tmp_path / "short.json"])
    nan = {**recs[0], "benchmarks": {"o1": {"auroc": 0.5}}}
    (tmp_path / "nofpr.json").write_text(json.dumps({"records": [nan]}))
    with pytest.raises(M.MetricsFileError, match=r"nofpr.json: record 0: benchmark 'o1' lacks"):
        M.read_metrics([tmp_path / "nofpr.json"])
    with pytest.raises(ValueError, match="none.json: no metrics records"):
        M.write_metrics(tmp_path / "none.json", [])


def test_per_benchmark_table_cells_and_means():
    table = T.build_tables(grid(), settings())["ood_benchmarks"]
    frame = table.frame.set_index(["model", "method"])
    assert list(frame.index) == [(m, x) for m in ("m1", "m2") for x in ("mcm", "cm", "cm-plp")]
    assert list(frame.columns) == ["o1 AUROC", "o1 FPR95", "o2 AUROC", "o2 FPR95",
                                   "mean AUROC", "mean FPR95"]
    # m2 / cm: o1 = 0.60 + 0.1 + 0.01 on the main test set "val"
    assert frame.loc[("m2", "cm"), "o1 AUROC"] == pytest.approx(0.71)
    assert frame.loc[("m2", "cm"), "o2 FPR95"] == pytest.approx(1 - 0.51)
    # the mean covers the main benchmarks only: the extra x1 (0.30) is left out
    assert frame.loc[("m1", "mcm"), "mean AUROC"] == pytest.approx((0.60 + 0.40) / 2)
    tsv = pd.read_csv(io.StringIO(T.table_tsv(table)), sep="\t")
    row = tsv[(tsv.model == "m2") & (tsv.method == "cm")].iloc[0]
    assert row["o1 AUROC"] == pytest.approx(71.0)  # percent in the files


def test_best_value_marked_per_model_and_direction():
    table = T.build_tables(grid(), settings())["ood_benchmarks"]
    tsv = pd.read_csv(io.StringIO(T.table_tsv(table)), sep="\t",
                      keep_default_na=False)
    best = dict(zip(zip(tsv.model, tsv.method), tsv.best))
    # cm-plp has the highest AUROC and lowest FPR95 for both models, mcm nothing
    for model in ("m1", "m2"):
        assert set(best[(model, "cm-plp")].split(";")) == set(table.better)
        assert best[(model, "mcm")] == ""
    md = T.table_markdown(table)
    assert "| m1 | cm-plp | **80.00** | **20.00** |" in md
    assert "| m1 | mcm | 60.00 | 40.00 |" in md
    html = T.table_html(table)
    assert html.count('class="n best"') == 2 * len(table.better)
    # within each model, the marked FPR95 is the lowest and the marked AUROC the highest
    mask, frame = table.best_mask(), table.frame
    for _, part in frame.groupby("model"):
        marked = mask.loc[part.index]
        assert part["mean FPR95"][marked["mean FPR95"]].tolist() == [part["mean FPR95"].min()]
        assert part["mean AUROC"][marked["mean AUROC"]].tolist() == [part["mean AUROC"].max()]


def test_ties_mark_all_and_constant_columns_mark_none():
    frame = pd.DataFrame({"model": ["a", "a", "a"], "method": ["x", "y", "z"],
                          "AUROC": [0.9, 0.9, 0.5], "const": [0.3, 0.3, 0.3]})
    table = T.Table("t", "t", frame, better={"AUROC": "max", "const": "max"})
    mask = table.best_mask()
    assert mask["AUROC"].tolist() == [True, True, False]
    assert not mask["const"].any()


def _md_rows(md):
    return [line for line in md.splitlines() if line.startswith("|")]


def test_markdown_well_formed_for_every_table():
    for table in T.build_tables(grid(), settings()).values():
        md = T.table_markdown(table)
        assert md.startswith(f"### {table.title}\n")
        rows = _md_rows(md)
        if table.note:
            assert not rows and "_No data:" in md
            continue
        widths = {len(re.split(r"(?<!\\)\|", r)) for r in rows}
        assert len(widths) == 1, f"{table.name}: ragged Markdown table"
        assert re.fullmatch(r"\|(-{3}:?\|)+", rows[1]), rows[1]
        assert len(rows) == len(table.frame) + 2


def test_id_shift_and_plp_tables():
    tables = T.build_tables(grid(), settings())
    shift = tables["id_shift"].frame.set_index(["model", "method"])
    # every method loses 0.05 on both main benchmarks under the shift
    row = shift.loc[("m1", "mcm")]
    assert row["val AUROC"] == pytest.approx(0.50)
    assert row["shift AUROC"] == pytest.approx(0.45)
    assert row["relative drop"] == pytest.approx(0.05 / 0.50)
    # FPR95 beside AUROC per ID test set (here FPR95 = 1 − AUROC per benchmark)
    assert row["val FPR95"] == pytest.approx(0.50) and row["shift FPR95"] == pytest.approx(0.55)
    assert row["shifted mean FPR95"] == pytest.approx(0.55)
    assert list(shift.columns[:4]) == ["val AUROC", "val FPR95", "shift AUROC", "shift FPR95"]
    plp = tables["plp"].frame
    assert plp[plp.model == "m1"].method.tolist() == ["cm", "cm-plp"]  # same label set
    assert set(plp.labels) == {"cm"}


def test_corpora_positives_and_extra_benchmarks():
    tables = T.build_tables(grid(), settings())
    corpora = tables["corpora"].frame
    m1 = corpora[corpora.model == "m1"]
    # two corpora for m1: only cm ran on both, so only cm is compared
    assert m1[["corpus", "method"]].values.tolist() == [["wn", "cm"], ["words", "cm"]]
    assert m1["mean AUROC"].tolist() == pytest.approx([0.60, 0.40])
    positives = tables["positives"].frame
    m1 = positives[positives.model == "m1"]
    assert m1["|Y_pos|"].tolist() == sorted(m1["|Y_pos|"])  # sorted for equal-|Y_pos| reading
    assert {"cm20", "cm80"} <= set(m1.method)  # the sweep ID set is set up like the main one
    extra = tables["all_benchmarks"].frame
    assert "x1 AUROC" in extra and extra["extra mean AUROC"].tolist() == pytest.approx(
        [0.30] * len(extra))


def test_missing_experiments_give_notes(tmp_path):
    recs = [r for r in grid(tests=("val",)) if r["method"] != "cm-plp"]
    tables = T.build_tables(recs, settings(tests=("val",)))
    assert "two or more ID test sets" in tables["id_shift"].note
    assert "plp" in tables["plp"].note
    paths = {f: tmp_path / f"plp.{f}" for f in T.FORMATS}
    T.write_table(tables["plp"], paths)
    assert paths["tsv"].read_text().startswith("note\nno method with score 'plp'")
    assert "No data" in paths["html"].read_text()


def clustering_attrs(method, nmi, warnings=(), C=40):
    """Attributes of a cluster file, as the cluster rule writes them."""
    health = {"nonempty_clusters": C - 2, "size_entropy_ratio": 0.9, "warnings": list(warnings),
              "messages": [f"{w} happened" for w in warnings]}
    if method == "temi":
        health["loss_ratio"] = 1.2 if warnings else 6.0
    return {"clusterer": method, "nmi": nmi, "ari": nmi - 0.3, "hungarian_accuracy": nmi - 0.2,
            "overclustering_accuracy": nmi - 0.1, "per_class_accuracy": nmi - 0.15,
            "class_coverage": 1.0, "num_classes": 10, "health": health}


def test_clustering_table_sets_clusterers_side_by_side_with_their_health():
    clusterings = [
        T.clustering_record("m1", "tr", "kmeans", 40, clustering_attrs("kmeans", 0.8)),
        T.clustering_record("m1", "tr", "kmeans", 20, clustering_attrs("kmeans", 0.7, C=20)),
        T.clustering_record("m1", "tr", "temi", 40, clustering_attrs("temi", 0.9)),
        T.clustering_record("m2", "tr", "temi", 40,
                            clustering_attrs("temi", 0.5, ["not_learned", "all_warmup"])),
        T.clustering_record("m2", "tr", "kmeans", 40, {"clusterer": "kmeans"}),  # older file
    ]
    table = T.build_tables(grid(), settings(), clusterings)["clustering"]
    frame = table.frame
    assert frame[["model", "C", "clusterer"]].values.tolist() == [
        ["m1", 20, "kmeans"], ["m1", 40, "kmeans"], ["m1", 40, "temi"],
        ["m2", 40, "kmeans"], ["m2", 40, "temi"]]
    assert frame.health.tolist() == ["ok", "ok", "ok", "not recorded",
                                     "NOT LEARNED; all warm-up"]
    assert frame["loss / uniform loss"].isna().tolist() == [True, True, False, True, False]
    # Best marks compare clusterers at the same C only (m1, C = 40: TEMI).
    md = T.table_markdown(table)
    assert "| m1 | tr | 40 | temi | temi | **90.00** |" in md
    assert "| m1 | tr | 20 | kmeans | kmeans | 70.00 |" in md
    assert "HEALTH CHECK FAILED for 1: temi C=40 (m2, tr): not_learned happened" in md
    tsv = pd.read_csv(io.StringIO(T.table_tsv(table)), sep="\t", keep_default_na=False)
    assert float(tsv.loc[2, "NMI"]) == pytest.approx(90.0) and "NMI" in tsv.loc[2, "best"]
    assert float(tsv.loc[4, "NMI"]) == pytest.approx(50.0) and tsv.loc[3, "NMI"] == "nan"
    assert len({len(re.split(r"(?<!\\)\|", r)) for r in _md_rows(md)}) == 1
    assert "no clustering" in T.build_tables(grid(), settings())["clustering"].note


def test_long_table_keeps_fractions(tmp_path):
    T.write_long(grid(), tmp_path / "long.tsv")
    long = pd.read_csv(tmp_path / "long.tsv", sep="\t")
    assert len(long) == sum(len(r["benchmarks"]) for r in grid())
    row = long[(long.model == "m2") & (long.method == "cm") & (long.testset == "val")
               & (long.benchmark == "o1")].iloc[0]
    assert row.auroc == pytest.approx(0.71) and row.lq_n_pos == 11


def test_sweep_families_pool_alike_id_sets():
    inputs = P.PlotInputs.build(grid(), settings())
    (family,) = P.sweep_families(inputs, "C")
    # cm (C = 40) from the main ID set joins cm20 and cm80 of the sweep ID set
    assert family.value.tolist() == [20.0, 40.0, 80.0]
    assert family.method.tolist() == ["cm20", "cm", "cm80"]
    assert P.sweep_families(inputs, "M") == []


def _check_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with Image.open(path) as im:
        assert im.width > 200 and im.height > 100


def _label_table(tmp_path, name, n):
    path = tmp_path / f"{name}.tsv"
    rows = ["index\tname\trole\tsource\tvotes\tscore"]
    rows += [f"{i}\tword{i}\tpos\tcorpus\t{i + 1}\t0.5" for i in range(n)]
    rows += ["90\tnan\tneg\tcorpus\t\tnan", "91\tnull\tneg\tcorpus\t\tnan"]
    path.write_text("\n".join(rows) + "\n")
    return read_label_table(path)


@pytest.mark.parametrize("case", ["full", "one_model_one_method", "empty"])
def test_every_plot_writes_a_png(tmp_path, case):
    recs, conf = grid(), settings()
    labels = {("m1", "main", "cm"): _label_table(tmp_path, "cm", 12)}
    sweeps = {("m1", "main", "temi"): pd.DataFrame({
        "C": [20, 40, 80], "num_ypos": [9, 15, 18], "ypos_per_cluster": [0.45, 0.37, 0.22],
        "purity": [0.5, 0.6, 0.7], "entropy_nats": [1.2, 1.0, 0.8],
        "redundancy": [0.1, 0.2, 0.4], "elbow": [0, 1, 0]})}
    if case == "one_model_one_method":
        recs = [r for r in recs if r["model"] == "m1" and r["method"] == "cm"
                and r["idset"] == "main"]
        conf, sweeps = None, {}
    elif case == "empty":
        recs, conf, labels, sweeps = [], None, {}, {}
    inputs = P.PlotInputs.build(recs, conf, labels, sweeps)
    for name, plot in P.PLOTS.items():
        plot(inputs, tmp_path / f"{name}.png")
        _check_png(tmp_path / f"{name}.png")
    assert not list(tmp_path.glob("*.tmp"))


def test_label_table_keeps_word_names(tmp_path):
    frame = _label_table(tmp_path, "words", 3)
    assert frame.name.tolist()[-2:] == ["nan", "null"]
    assert frame.votes.tolist()[:3] == [1, 2, 3] and frame.votes.isna().sum() == 2
    (tmp_path / "bad.tsv").write_text("index\tword\n0\tdog\n")
    with pytest.raises(LabelSetFileError, match=r"bad.tsv: .*missing \['name', 'role', "):
        read_label_table(tmp_path / "bad.tsv")
    # The report's reader and the checked one are one parser: the same rows, the same errors.
    with pytest.raises(LabelSetFileError, match=r"bad.tsv: .*missing"):
        positive_names(tmp_path / "bad.tsv")


def test_report_rules_name_every_table_plot_and_caption():
    for target in (*catalog.TABLES.values(), *catalog.PLOTS.values()):
        module = importlib.import_module(target.split(":")[0])
        assert callable(getattr(module, target.split(":")[1]))
    from docutils.core import publish_doctree

    for kind, names in (("table", T.TABLES), ("plot", P.PLOTS)):
        for name in names:
            text = (REPO / f"workflow/report/{kind}_{name}.rst").read_text()
            text = re.sub(r"\{\{.*?\}\}", "X", text)  # Jinja fields are filled by Snakemake
            publish_doctree(text, settings_overrides={"halt_level": 2, "report_level": 5})


def test_report_rules_run_on_existing_metrics(tmp_path):
    """The tables and plots rules alone, on metrics and label files already in place."""
    from helpers import run_workflow  # noqa: F401  (sets HF_HUB_OFFLINE)
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
    )

    conf = settings()
    cfg = {
        "models": {m: {"arch": "clustermine-tiny", "pretrained": None} for m in conf["models"]},
        "datasets": {d: {"type": "imagefolder", "root": f"data/{d}"}
                     for d in ("tr", "val", "shift", *MAIN, *EXTRA)},
        "corpora": {"wn": {"type": "wordnet"}, "words": {"type": "wordnet", "pos": ["n"]}},
        "clusterers": {"temi": {"method": "temi"}},
        "label_sets": {"gt": {"miner": "gt"}, **{
            m: {"miner": "clustermine", "clusterer": "temi", "C": s["label_set"]["C"]}
            for m, s in METHODS.items() if m in ("cm", "cm20", "cm80")}},
        "methods": {m: {k: v for k, v in s.items() if k != "label_set"}
                    for m, s in METHODS.items()},
        "idsets": {k: {kk: vv for kk, vv in v.items() if kk != "extra_benchmarks"}
                   for k, v in conf["idsets"].items()},
    }
    cfg["idsets"]["main"]["benchmarks"] = MAIN + EXTRA
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    recs = grid()
    recs += [{**r, "model": "m2"} for r in recs if r["idset"] != "main"]  # every ID set runs
    write_records(tmp_path, recs)                                        # for every model
    for model in conf["models"]:
        for idset, spec in cfg["idsets"].items():
            for ls in {cfg["methods"][m]["labels"] for m in spec["methods"]}:
                path = tmp_path / f"results/{model}/labels/{idset}.{ls}.tsv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("index\tname\trole\tsource\tvotes\tscore\n"
                                "0\tdog\tpos\tcorpus\t3\t0.5\n1\tcat\tneg\tcorpus\t\tnan\n")
    from clustermine.cluster_analysis import clustering_health
    from clustermine.clustering import ClusterResult
    from clustermine.clustering.io import write_clusters

    for model in conf["models"]:  # the clusterings the label sets vote on, with their health
        for c in (20, 40, 80):
            a = np.arange(2 * c) % c
            result = ClusterResult(a, c, "temi", np.zeros(2), health=clustering_health(a, c))
            write_clusters(tmp_path / f"results/{model}/clusters/tr.temi-C{c}.h5", result,
                           {"nmi": 0.5 + c / 1000})
    with SnakemakeApi(OutputSettings(quiet={Quietness.PROGRESS}, show_failed_logs=True)) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[tmp_path / "config.yaml"]),
            snakefile=REPO / "workflow" / "Snakefile", workdir=tmp_path)
        targets = {"results/tables/ood_benchmarks.tsv", "results/plots/prompts.png"}
        dag = wf.dag(dag_settings=DAGSettings(targets=targets,
                                              allowed_rules={"tables", "plots"}))
        dag.execute_workflow(executor="local", execution_settings=ExecutionSettings(lock=False))
    for name in T.TABLES:
        for fmt in T.FORMATS:
            assert (tmp_path / f"results/tables/{name}.{fmt}").stat().st_size > 0
    for name in P.PLOTS:
        _check_png(tmp_path / f"results/plots/{name}.png")
    md = (tmp_path / "results/tables/ood_benchmarks.md").read_text()
    assert "| m2 | cm-plp | **81.00** |" in md
    clustering = pd.read_csv(tmp_path / "results/tables/clustering.tsv", sep="\t")
    assert clustering[["model", "C"]].values.tolist() == [
        [m, c] for m in ("m1", "m2") for c in (20, 40, 80)]
    assert clustering.NMI.tolist() == pytest.approx([52.0, 54.0, 58.0] * 2)
    assert set(clustering.health) == {"ok"}


def test_openood_table_groups_benchmarks_with_their_means():
    conf = settings()
    conf["idsets"]["main"]["benchmark_groups"] = {"near": ["o1"], "far": ["o2", "x1"]}
    table = T.TABLES["openood"](grid(), T.ReportSettings.build(conf, grid()))
    row = table.frame[(table.frame.model == "m1") & (table.frame.method == "cm")].iloc[0]
    assert list(table.frame.columns[2:]) == [
        "o1 FPR95", "o1 AUROC", "near mean FPR95", "near mean AUROC",
        "o2 FPR95", "o2 AUROC", "x1 FPR95", "x1 AUROC", "far mean FPR95", "far mean AUROC"]
    assert row["near mean AUROC"] == pytest.approx(0.70)  # o1 of cm on m1 = 0.60 + 0.1
    assert row["far mean AUROC"] == pytest.approx((0.50 + 0.30) / 2)
    assert "near: o1" in table.description
    assert T.TABLES["openood"](grid(), T.ReportSettings.build(settings(), grid())).note
