"""The whole workflow on tiny data: every miner, every score (streamed ones included) and every
clusterer of the catalog, a cluster sweep, a precomputed embedding file, tables, plots and the
HTML report, through real Snakemake runs."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from helpers import SNAKEFILE, file_times, planned_jobs, run_workflow, snakemake

from clustermine import catalog
from clustermine.clustering.io import read_clusters
from clustermine.labelsets import read_label_meta
from clustermine.metrics import read_metrics_file
from clustermine.h5io import read_image_embeddings, read_local_features
from clustermine.knn import read_knn
from clustermine.score_files import read_scores

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--configfile", "config.yaml"]


def _slug(name: str) -> str:
    return name.replace("_", "-")


def _small_params(plugin: catalog.Plugin) -> dict:
    return {k: v for k, v in plugin.small.items() if k in plugin.param_names}


def catalog_grid() -> tuple[dict, dict, dict]:
    """(clusterers, label sets, methods) covering every entry of the catalog, built from it:
    a new miner, score or clusterer is run here without editing a list.

    One clusterer per clusterer plugin; one label set per miner; one label set per optional
    key naming another label set (it names the first clustering miner's label set); one
    label set of that clustering miner per further clusterer. One method per score (with the
    label set of the miner of the same name, else Y_GT) and one per remaining label set (with
    the plain Eq. 1 score). Every plugin runs with its catalog ``small`` settings; a key
    naming a user's file (role ``file``) names the project's word list."""
    base = next(n for n, p in catalog.CLUSTERERS.items() if not p.needs)
    clustering_miner = next(n for n, p in catalog.MINERS.items() if p.has("clusters"))
    label_free = next(n for n, p in catalog.MINERS.items()
                      if not p.needs & {"class_names", "clusters"})  # fmt: skip
    clusterers = {}
    for name, plugin in catalog.CLUSTERERS.items():
        entry = {"method": name, **_small_params(plugin)}
        entry.update(dict.fromkeys(plugin.references({p.name: "x" for p in plugin.input_keys}),
                                   _slug(label_free)))  # fmt: skip
        clusterers[_slug(name)] = entry

    def miner_entry(name: str, clusterer: str) -> dict:
        plugin = catalog.miner(name)
        entry = {"miner": name, **_small_params(plugin)}
        if plugin.has("clusters"):
            entry[plugin.with_role("clusterer").name] = clusterer
            entry[plugin.with_role("num_clusters").name] = plugin.small["C"]
        for param in plugin.input_keys:
            if param.role == "file":  # a user's names file: the project's word list
                entry[param.name] = "data/words.txt"
        return entry

    label_sets = {_slug(n): miner_entry(n, _slug(base)) for n in catalog.MINERS}
    for name, plugin in catalog.MINERS.items():
        for param in plugin.input_keys:
            if param.role == "label_set" and not param.required:
                label_sets[f"{_slug(name)}-{_slug(param.name)}"] = {
                    **miner_entry(name, _slug(base)), param.name: _slug(clustering_miner)
                }
    for name in catalog.CLUSTERERS:
        if name != base:
            label_sets[f"{_slug(clustering_miner)}-{_slug(name)}"] = miner_entry(
                clustering_miner, _slug(name)
            )
    methods = {}
    for name, plugin in catalog.SCORES.items():
        labels = _slug(name) if _slug(name) in label_sets else "gt"
        methods[_slug(name)] = {"score": name, "labels": labels, **_small_params(plugin)}
    used = {m["labels"] for m in methods.values()}
    for slug in label_sets:
        if slug not in used and slug not in methods:
            methods[slug] = {"score": catalog.PLAIN_SCORE, "labels": slug}
    return clusterers, label_sets, methods


CLUSTERERS, LABEL_SETS, METHODS = catalog_grid()
# Scores that read more of an image than its embedding (local patch features, views) cannot
# score the precomputed benchmark: they run on an ID set of their own, without it.
FEATURE_METHODS = sorted(
    m for m, e in METHODS.items() if catalog.score(e["score"]).needs & {"local_features", "views"}
)


def idset_of(method: str) -> str:
    return "tiny-img" if method in FEATURE_METHODS else "tiny"


def write_config(project: Path, edit=None) -> dict:
    """The module's config of ``project`` (from its pristine ``config.base.yaml`` where it has
    one: an edit a test made never outlives it), with ``edit`` applied."""
    base = project / "config.base.yaml"
    config = yaml.safe_load((base if base.is_file() else project / "config.yaml").read_text())
    config["datasets"]["ood-pre"] = {
        "type": "embeddings", "paths": {"tiny-a": str(project / "data" / "ood-pre.h5")}
    }
    config["clusterers"] = copy.deepcopy(CLUSTERERS)
    config["label_sets"] = copy.deepcopy(LABEL_SETS)
    config["methods"] = copy.deepcopy(METHODS)
    tiny = config["idsets"]["tiny"]
    config["idsets"]["tiny-img"] = {
        **{k: tiny[k] for k in ("train", "test", "corpus", "prompts", "benchmarks")},
        "methods": FEATURE_METHODS,
    }
    for entry in config["clusterers"].values():  # two ID sets train on id-train: name one
        idset = catalog.clusterer(entry["method"]).with_role("idset")
        if idset is not None:
            entry[idset.name] = "tiny"
    config["idsets"]["tiny"]["methods"] = [m for m in METHODS if m not in FEATURE_METHODS]
    config["idsets"]["tiny"]["extra_benchmarks"] = ["ood-pre"]
    config["idsets"]["tiny"]["cluster_sweep"] = {"kmeans": [2, 3, 4]}
    # The ClusterMine detector re-mined from the ID test images and the OOD images.
    config["deployments"] = {"arrive": {"idset": "tiny", "method": "clustermine",
                                        "images": ["id-test", "ood"], "min_support": 1}}
    if edit:
        edit(config)
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    return config


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The tiny project run end to end once (shared by the tests of this module)."""
    from helpers import TINY_WORDS, make_image_folder, tiny_config

    project = tmp_path_factory.mktemp("pipeline")
    data = project / "data"
    make_image_folder(data / "id-train", {"dog": 12, "cat": 12, "car": 12}, seed=1)
    make_image_folder(data / "id-test", {"dog": 5, "cat": 5, "car": 5}, seed=2)
    make_image_folder(data / "ood", {"tree": 6, "boat": 6}, seed=3)
    (data / "words.txt").write_text("\n".join(TINY_WORDS) + "\n")
    (project / "config.base.yaml").write_text(yaml.safe_dump(tiny_config(data)))
    shutil.copy(project / "config.base.yaml", project / "config.yaml")
    # A precomputed embedding file "made elsewhere": the OOD set encoded by the same model.
    run_workflow(project, ["results/tiny-a/images/ood.h5"])
    shutil.copy(project / "results/tiny-a/images/ood.h5", data / "ood-pre.h5")
    write_config(project)
    run_workflow(project)
    return project


def rule_graph(project):
    """{rule: the rules it needs directly}, from ``snakemake --rulegraph``."""
    out = snakemake(project, "--rulegraph", check=True).stdout
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", out, re.M))
    needs: dict[str, set[str]] = {name: set() for name in names.values()}
    for src, dst in re.findall(r"^\s*(\d+) -> (\d+)", out, re.M):
        needs[names[dst]].add(names[src])
    return needs


def test_every_job_reading_a_precomputed_file_needs_its_check(tiny_project):
    """No job reads a dataset before its check has passed, by construction: an image folder's
    index needs its check, and so does every job that reads a precomputed embedding file
    (which may be its only input: an ID train set given as embeddings is read by the
    clustering, kNN, zero-shot, mining and fitting jobs; a benchmark by scoring)."""
    config = write_config(tiny_project)  # every catalog entry, with the benchmark ood-pre
    (tiny_project / "data" / "ood-pre.h5").touch()  # named by it; a rule graph reads no file
    assert "check_data" in rule_graph(tiny_project)["score"]
    config["datasets"]["train-pre"] = {
        "type": "embeddings", "paths": {"tiny-a": str(tiny_project / "data" / "train-pre.h5")}}
    config["idsets"]["tiny"]["train"] = "train-pre"
    config["corpora"]["words"].pop("add_class_names_of")
    (tiny_project / "config.yaml").write_text(yaml.safe_dump(config))
    (tiny_project / "data" / "train-pre.h5").touch()
    needs = rule_graph(tiny_project)
    readers = {"knn", "cluster", "cluster_sweep", "zero_shot_labels", "mine_labels",
               "fit_detector", "score"}
    assert {rule for rule in readers if "check_data" not in needs[rule]} == set()
    assert needs["preflight"] == {"check_data"} and "preflight" in needs["all"]


def test_every_method_is_evaluated(pipeline):
    assert FEATURE_METHODS == ["cover", "gl-mcm"]
    for method in METHODS:
        idset = idset_of(method)
        (record,) = read_metrics_file(pipeline / f"results/tiny-a/metrics/{idset}.{method}.json")
        assert record["testset"] == "id-test", method
        extra = {"ood-pre"} if idset == "tiny" else set()
        assert set(record["benchmarks"]) == {"ood"} | extra, method
        for bench in record["benchmarks"].values():
            assert 0.0 <= bench["auroc"] <= 1.0 and 0.0 <= bench["fpr95"] <= 1.0, method
        # The mean is over the main benchmarks only; the extra one is reported on its own.
        assert record["mean"]["auroc"] == pytest.approx(record["benchmarks"]["ood"]["auroc"])
        if record["score"] == "eq1" and "tau" not in METHODS[method]:  # the τ of Eq. 1
            assert record["tau"] == pytest.approx(0.1 / read_scores(
                pipeline / f"results/tiny-a/scores/tiny.{method}.h5", "id-test"
            ).attrs["logit_scale"])


def test_precomputed_embeddings_are_used_as_they_are(pipeline):
    assert not (pipeline / "results/tiny-a/images/ood-pre.h5").exists()
    # Checked (read whole, before any job reads it), never encoded.
    logs = {p.parent.name for p in (pipeline / "logs").rglob("*ood-pre*.log")}
    assert logs == {"checked"}, logs
    assert "| ood-pre | embeddings |" in (pipeline / "logs/checked/ood-pre.log").read_text()
    # The same embeddings scored from either file give the same scores.
    for method in ("clustermine", "mahalanobis"):
        path = pipeline / f"results/tiny-a/scores/tiny.{method}.h5"
        a, b = read_scores(path, "ood"), read_scores(path, "ood-pre")
        np.testing.assert_array_equal(a.scores, b.scores)
        assert b.attrs["embeddings"].endswith("data/ood-pre.h5")


def test_local_features_and_views_are_encoded_for_the_scored_sets_only(pipeline):
    results = pipeline / "results/tiny-a"
    views = [f"views/{v}" for v in catalog.score("cover").small["views"]]
    for features in ["local", *views]:
        made = sorted(p.name for p in (results / features).glob("*.h5"))
        assert made == ["id-test.h5", "ood.h5"], features  # never ID-train
    local = read_local_features(results / "local/id-test.h5")
    images = read_scores(results / "scores/tiny-img.gl-mcm.h5", "id-test")
    assert local.embeddings.shape[:2] == (len(images.scores), 16)  # a 4 x 4 grid per image
    assert (results / "local/shards/id-test.0-of-2.h5").exists() is False  # temporary shards
    view = read_image_embeddings(results / f"{views[0]}/ood.h5")
    assert view.attrs["view"] == views[0].split("/")[1] and view.attrs["view_seed"] == 0


def test_deployed_gl_mcm_and_cover_score_images_as_the_workflow_did(pipeline):
    """A deployed GL-MCM or CoVer detector makes the local features and views of an image
    itself (CoVer's tiny views include random noise, seeded by the image's pixels), through
    the Python API and the HTTP service, and gives each image the workflow's score."""
    import requests
    from helpers.service import serving, upload

    from clustermine.deploy.detector import UnscorableEmbeddings, load_deployed_detector
    from clustermine.deploy.service import Limits

    results = pipeline / "results/tiny-a"
    ood = read_image_embeddings(results / "images/ood.h5")
    paths = [str(Path(ood.attrs["root"]) / p) for p in ood.paths]
    for method in ("gl-mcm", "cover"):
        det = load_deployed_detector(results / f"detectors/tiny-img.{method}.h5", device="cpu")
        want = read_scores(results / f"scores/tiny-img.{method}.h5", "ood").scores
        out = det.predict(paths)
        assert out.num_errors == 0
        np.testing.assert_allclose(out.scores, want, rtol=1e-5, atol=1e-7)
        with serving(det, Limits()) as url:
            r = requests.post(f"{url}/score", files=upload(paths[:3]))
        assert r.status_code == 200, r.text
        got = [row["score"] for row in r.json()["results"]]
        np.testing.assert_allclose(got, want[:3], rtol=1e-5, atol=1e-7)
        # Embeddings alone are not enough; a NaN in an image's local features or in one of its
        # views is an error in its row, as a NaN in its embedding is.
        features, _ = det.encode(paths[:3])
        with pytest.raises(ValueError, match="give them as local= and views="):
            det.predict(embeddings=features.embeddings)
        if method == "gl-mcm":
            features.local[1, 0, 0] = np.nan
        else:
            features.views[-1][1, 0] = np.nan
        rows = det.predict(embeddings=features.embeddings, local=features.local,
                           views=features.views)  # fmt: skip
        assert [bool(e) for e in rows.errors] == [False, True, False]
        assert "NaN or infinite" in rows.errors[1] and rows.ood[1] is None
        np.testing.assert_allclose(rows.scores[[0, 2]], want[[0, 2]], rtol=1e-5, atol=1e-7)
        with pytest.raises(UnscorableEmbeddings, match=r"rows 1\b"):
            det.score_embeddings(features.embeddings, local=features.local, views=features.views)
    cli = subprocess.run(
        [sys.executable, "-m", "clustermine.cli", "score",
         str(results / "detectors/tiny-img.gl-mcm.h5"), "--embeddings",
         str(results / "images/ood.h5")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert "also reads the local patch features" in cli.stderr
    assert "give the images, not --embeddings" in cli.stderr


def test_the_views_of_an_image_follow_its_pixels_not_its_name(pipeline, tmp_path):
    """The same image under another name (odd characters), behind a symbolic link, as bytes
    or as a PIL image gets the same CoVer score: its noisy views are drawn alike."""
    from PIL import Image

    from clustermine.deploy.detector import load_deployed_detector

    results = pipeline / "results/tiny-a"
    det = load_deployed_detector(results / "detectors/tiny-img.cover.h5", device="cpu")
    ood = read_image_embeddings(results / "images/ood.h5")
    original = Path(ood.attrs["root"]) / ood.paths[0]
    odd = tmp_path / "caf\u00e9 \u2014 copie (1).PNG"
    shutil.copy(original, odd)
    link = tmp_path / "link.png"
    link.symlink_to(original)
    sources = [original, odd, link, original.read_bytes(), Image.open(original)]
    scores = [det.predict([x]).scores[0] for x in sources]  # one at a time: same batch shape
    assert np.isfinite(scores).all()
    assert scores == pytest.approx([scores[0]] * len(scores), rel=1e-9)
    other = Path(ood.attrs["root"]) / ood.paths[1]
    assert det.predict([other]).scores[0] != pytest.approx(scores[0], rel=1e-6)


def test_a_deployment_remines_its_detector_from_its_images(pipeline):
    """Rule remine_deployment: the new detector (same score, positives from the vote, every
    deployment image accounted for), its concept diff, and old against new on every (test,
    benchmark) pair of the ID set."""
    from clustermine.detectors import load_detector

    results = pipeline / "results/tiny-a"
    old = load_detector(results / "detectors/tiny.clustermine.h5")
    new = load_detector(results / "deployments/arrive.h5")
    assert new.name == old.name and new.params == old.params
    record = new.meta["remined"]
    n = sum(len(read_image_embeddings(results / f"images/{d}.h5").paths)
            for d in ("id-test", "ood"))  # fmt: skip
    assert record["images"] == n
    assert record["mined"] + record["held_out"] + record["left_out_by_guard"] == n
    assert record["settings"]["seed"] == 0 and record["settings"]["min_support"] == 1
    assert len(new.calibration) == record["held_out"]
    assert set(new.text_pos.names) | set(new.text_neg.names) == (
        set(old.text_pos.names) | set(old.text_neg.names))  # fmt: skip
    rows = [line.split("\t") for line in
            (results / "deployments/arrive.diff.tsv").read_text().splitlines()]  # fmt: skip
    assert rows[0] == ["name", "change", "images", "clusters", "examples"]
    assert sorted(r[0] for r in rows[1:] if r[1] in ("added", "kept")) == sorted(
        new.text_pos.names)  # fmt: skip
    assert {r[0] for r in rows[1:] if r[1] in ("kept", "removed")} == set(old.text_pos.names)
    summary = [line.split("\t") for line in
               (results / "deployments/arrive.summary.tsv").read_text().splitlines()]  # fmt: skip
    assert summary[0][:2] == ["test", "benchmark"]
    assert {tuple(r[:2]) for r in summary[1:]} == {("id-test", "ood"), ("id-test", "ood-pre")}
    metrics = read_metrics_file(results / "metrics/tiny.clustermine.json")[0]
    old_auroc = {r[1]: float(r[2]) for r in summary[1:]}
    want = 100 * metrics["benchmarks"]["ood"]["auroc"]
    assert old_auroc["ood"] == pytest.approx(want, abs=1e-3)


def test_a_precomputed_set_cannot_give_local_features(pipeline, tmp_path):
    project = tmp_path / "copy"
    shutil.copytree(pipeline, project, symlinks=True)

    def edit(config):
        config["idsets"]["tiny"]["methods"].append("gl-mcm")

    write_config(project, edit)
    out = dry_run(project)
    message = out.stdout + out.stderr
    assert out.returncode != 0
    assert "dataset 'ood-pre' is given as precomputed embeddings" in message
    assert "needs its local features" in message


def test_clustering_outputs(pipeline):
    with h5py.File(pipeline / "results/tiny-a/knn/id-train.k5.h5", "r") as f:
        assert f["indices"].shape == (36, 5)
    for name, c in [("kmeans-C2", 2), ("kmeans-C3", 3), ("kmeans-C4", 4), ("temi-C3", 3)]:
        result = read_clusters(pipeline / f"results/tiny-a/clusters/id-train.{name}.h5")
        assert len(result) == 36 and result.num_clusters == c
        # The ID-train images have labels: agreement with the classes is recorded.
        assert 0.0 <= result.attrs["nmi"] <= 1.0 and "hungarian_accuracy" in result.attrs
    temi = read_clusters(pipeline / "results/tiny-a/clusters/id-train.temi-C3.h5")
    assert len(temi.head_losses) == 3 and temi.params["heads"] == 3
    assert temi.second_assignments.shape == (36,) and "overclustering_accuracy" in temi.attrs
    # Three epochs, all of them warm-up: the health check says so, in the file and the log
    # (whether six steps leave the heads near uniform depends on the random tiny model, so
    # not_learned is tested on planted data in test_temi.py).
    assert "all_warmup" in temi.warnings and temi.health["loss_ratio"] > 0
    log = (pipeline / "logs/tiny-a/clusters/id-train.temi-C3.log").read_text()
    assert "HEALTH CHECK" in log and "learning-rate warm-up" in log
    kmeans = read_clusters(pipeline / "results/tiny-a/clusters/id-train.kmeans-C3.h5")
    assert kmeans.health["iterations"] >= 1 and kmeans.health["nonempty_clusters"] == 3
    sweep = (pipeline / "results/tiny-a/clusters/sweeps/tiny.kmeans.tsv").read_text().splitlines()
    header = sweep[0].split("\t")
    assert {"C", "purity", "num_ypos", "nmi", "elbow"} <= set(header)
    assert [row.split("\t")[0] for row in sweep[1:]] == ["2", "3", "4"]


def test_label_sets_record_quality_and_clusters(pipeline):
    for labelset in LABEL_SETS:
        tsv = pipeline / f"results/tiny-a/labels/tiny.{labelset}.tsv"
        meta = read_label_meta(tsv)
        assert meta["label_set"] == labelset and meta["label_quality"]["n_pos"] >= 1
    meta = read_label_meta(pipeline / "results/tiny-a/labels/tiny.clustermine-temi.tsv")
    assert meta["cluster_analysis"]["C"] == 3 and "nmi" in meta["cluster_analysis"]
    # The health of the clustering voted on travels with the label set.
    assert "all_warmup" in meta["cluster_health"]["warnings"]
    # Per-positive quality columns for the label-quality histograms (Y_GT is known here).
    rows = [r.split("\t") for r in
            (pipeline / "results/tiny-a/labels/tiny.clustermine.tsv").read_text().splitlines()]
    assert rows[0][6:] == ["gt_sim", "gt_hops"]
    assert all(-1.0 <= float(r[6]) <= 1.0 for r in rows[1:] if r[2] == "pos")
    # PosMine matched to ClusterMine's number of positives.
    equal = read_label_meta(
        pipeline / "results/tiny-a/labels/tiny.posmine-match-positives-of.tsv"
    )
    clustermine = read_label_meta(pipeline / "results/tiny-a/labels/tiny.clustermine.tsv")
    assert equal["stats"]["n_pos"] == clustermine["stats"]["n_pos"]
    assert equal["params"]["num_positives"] == clustermine["stats"]["n_pos"]
    gt = read_label_meta(pipeline / "results/tiny-a/labels/tiny.gt.tsv")["label_quality"]
    assert gt["overlap"] == 1.0 and gt["f1"] == 1.0  # Y_GT against itself


def test_debiased_gradnorm_and_language_assisted_outputs(pipeline):
    # The density of the corpus is computed once and shared by both debiased label sets.
    density = list((pipeline / "results/tiny-a/text/density").glob("*.h5"))
    assert [p.name for p in density] == ["words.simple.k5.h5"]
    gt = read_label_meta(pipeline / "results/tiny-a/labels/tiny.debiased.tsv")
    mined = read_label_meta(pipeline / "results/tiny-a/labels/tiny.debiased-positives-of.tsv")
    assert gt["stats"]["gt_source"] == "classes" and mined["stats"]["positives_from"] == "clustermine"
    assert gt["inputs"]["density"].endswith("words.simple.k5.h5")
    cm = read_label_meta(pipeline / "results/tiny-a/labels/tiny.clustermine.tsv")
    assert mined["stats"]["n_pos"] == cm["stats"]["n_pos"]
    scores = read_scores(pipeline / "results/tiny-a/scores/tiny.debiased.h5", "id-test")
    assert 0 <= scores.attrs["clamped_pairs"] <= scores.attrs["pairs"]
    with h5py.File(pipeline / "results/tiny-a/detectors/tiny.debiased.h5", "r") as f:
        assert "kappa" in f.attrs["fit_stats"]
    language = read_clusters(
        pipeline / "results/tiny-a/clusters/id-train.language-assisted-C3.h5"
    )
    assert language.clusterer == "language_assisted" and "nmi" in language.attrs
    assert language.attrs["names_source"].endswith("labels/tiny.posmine.tsv")


def test_tables_plots_and_report(pipeline):
    table = (pipeline / "results/tables/ood_benchmarks.md").read_text()  # the main ID set's
    long = (pipeline / "results/tables/metrics_long.tsv").read_text()
    for method in METHODS:
        assert method in (long if method in FEATURE_METHODS else table)
    assert "\ttiny-img\t" in long
    plots = list((pipeline / "results/plots").glob("*.png"))
    assert {p.stem for p in plots} == set(catalog.PLOTS)  # the deployments figure included
    assert all(p.stat().st_size > 1000 for p in plots)
    assert "| tiny-a | arrive | id-test | ood |" in (
        pipeline / "results/tables/deployments.md").read_text()  # fmt: skip
    out = subprocess.run([*SNAKEMAKE, "--report", "results/report.html", "--cores", "1"],
                         cwd=pipeline, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    html = (pipeline / "results/report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "ood_benchmarks" in html and "clustering" in html
    assert "Galleries" in html  # the gallery page
    # TEMI and k-means side by side at C = 3, the all-warm-up TEMI flagged.
    clustering = (pipeline / "results/tables/clustering.md").read_text()
    assert "| tiny-a | id-train | 3 | kmeans | kmeans |" in clustering
    assert "| tiny-a | id-train | 3 | temi | temi |" in clustering
    assert "all warm-up" in clustering and "HEALTH CHECK FAILED" in clustering


def test_the_gallery_shows_every_clustering_label_set_and_method(pipeline):
    """One page for the main model's ID set: a section per clustering its label sets vote on,
    per label set of its methods and per method, with thumbnails of the images."""
    page = (pipeline / "results/tiny-a/gallery/tiny.html").read_text(encoding="utf-8")
    titles = set(re.findall(r"<summary><h2>([^<]*)</h2>", page))
    config = yaml.safe_load((pipeline / "config.yaml").read_text())
    methods = config["idsets"]["tiny"].get("methods") or list(config["methods"])
    label_sets = {config["methods"][m].get("labels") for m in methods} - {None}
    clusterings = set()
    for slug in label_sets:
        spec = config["label_sets"][slug]
        plugin = catalog.miner(spec["miner"])
        if plugin.has("clusters"):
            clusterer = spec[plugin.with_role("clusterer").name]
            clusterings.add(f"{clusterer}-C{spec[plugin.with_role('num_clusters').name]}")
    expected = ({f"Errors: {m}" for m in methods} | {f"Label set: {s}" for s in label_sets}
                | {f"Clusters: {c}" for c in clusterings})  # fmt: skip
    assert clusterings and titles == expected, titles ^ expected
    assert len(set(re.findall(r'class="img (t\d+)"', page))) > 10


def test_editing_one_method_reruns_only_its_files(pipeline):
    before = file_times(pipeline / "results")
    write_config(pipeline, lambda c: c["methods"]["plp"].update(epochs=3))
    time.sleep(0.05)
    run_workflow(pipeline)
    after = file_times(pipeline / "results")
    changed = {p for p in after if after[p] != before.get(p)}
    method_files = {
        "tiny-a/detectors/tiny.plp.h5",
        "tiny-a/metrics/tiny.plp.json",
        "tiny-a/scores/tiny.plp.h5",
    }
    report = {p for p in changed if p.startswith(("tables/", "plots/", "tiny-a/gallery/"))}
    assert changed == method_files | report, sorted(changed - method_files - report)
    assert report  # the tables show the new numbers


# Settings that change only how fast results are made, and one value of each to change to.
SPEED_SETTINGS = {
    "models.tiny-a.batch_size": 3,
    "encode.num_workers": 1,
    "encode.max_unreadable_fraction": 0.5,
    "compute.device": "cpu",
    "compute.memory_budget_mb": 64,
}


def set_key(config: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = value


@pytest.fixture
def finished(pipeline):
    """The pipeline project with its own config, run to completion (earlier tests edit it)."""
    write_config(pipeline)
    run_workflow(pipeline)
    yield pipeline
    write_config(pipeline)


@pytest.mark.parametrize("setting", sorted(SPEED_SETTINGS))
def test_speed_settings_rerun_nothing(finished, setting):
    write_config(finished, lambda c: set_key(c, setting, SPEED_SETTINGS[setting]))
    assert planned_jobs(finished) == {}, setting


@pytest.mark.parametrize(
    "setting, value, expected",
    [
        # One method's temperature: its detector, scores and metrics, the deployment that
        # re-mines its detector, and the report.
        ("methods.clustermine.tau_factor", 0.2,
         {"fit_detector": 1, "score": 1, "evaluate": 1, "remine_deployment": 1}),
        # The number of clusters ClusterMine votes on: a clustering, its label set, the label
        # set matched to it (posmine-eq), and their methods.
        ("label_sets.clustermine-temi.C", 4,
         {"cluster": 1, "mine_labels": 1, "fit_detector": 1, "score": 1, "evaluate": 1}),
        # A miner parameter: that label set and its one method.
        ("label_sets.gt-aug.num_aug", 2,
         {"mine_labels": 1, "fit_detector": 1, "score": 1, "evaluate": 1}),
        # A clusterer parameter: every clustering by that clusterer and what voted on it.
        ("clusterers.temi.epochs", 2,
         {"cluster": 1, "mine_labels": 1, "fit_detector": 1, "score": 1, "evaluate": 1}),
        # The graph's search: a new graph file (the exact one stays), and what trains on it.
        ("clusterers.temi.knn_index", "ivf",
         {"knn": 1, "cluster": 1, "mine_labels": 1, "fit_detector": 1, "score": 1,
          "evaluate": 1}),
    ],
)
def test_result_settings_rerun_exactly_their_branch(finished, setting, value, expected):
    write_config(finished, lambda c: set_key(c, setting, value))
    jobs = planned_jobs(finished)
    assert jobs == {**expected, "tables": 1, "plots": 1, "gallery": 1, "all": 1}, setting


def test_an_approximate_graph_is_searched_and_its_recall_recorded(finished):
    def edit(config):
        config["clusterers"]["temi"].update(knn_index="ivf", knn_nprobe=2)

    write_config(finished, edit)
    clusters = "results/tiny-a/clusters/id-train.temi-C3.h5"
    run_workflow(finished, [clusters])
    graph = finished / "results/tiny-a/knn/id-train.k5.ivf-nlistauto-nprobe2.h5"
    nn = read_knn(graph)
    assert nn.attrs["index"] == "ivf" and nn.attrs["graph"] == graph.name[9:-3]
    assert nn.attrs["nlist"] == 1 and 0 < nn.attrs["recall"] <= 1  # 36 rows: one cell
    attrs = read_clusters(finished / clusters).attrs
    assert attrs["knn_source"] == str(graph.relative_to(finished))
    assert attrs["knn_recall"] == nn.attrs["recall"] and attrs["knn_index"] == "ivf"
    # The exact graph stays: going back to it reruns the clustering on it, not the graph.
    assert (finished / "results/tiny-a/knn/id-train.k5.h5").is_file()
    write_config(finished)
    assert "knn" not in planned_jobs(finished)


def _reordered(value, depth=0):
    """``value`` with the keys of every mapping below the sections in reverse order."""
    if isinstance(value, dict):
        keys = list(value) if depth < 2 else list(reversed(value))
        return {k: _reordered(value[k], depth + 1) for k in keys}
    if isinstance(value, list):
        return [_reordered(v, depth + 1) for v in value]
    return value


def test_the_same_config_in_another_key_order_reruns_nothing(finished):
    config = yaml.safe_load((finished / "config.yaml").read_text())
    # Every entry's keys (a dataset's type and root, a method's score and labels, ...)
    # reversed: the same declarations, so nothing reruns.
    (finished / "config.yaml").write_text(yaml.safe_dump(_reordered(config), sort_keys=False))
    assert planned_jobs(finished) == {}
    # Every key sorted, sections included: the entries' order is the report's row order, so
    # only the tables, the figures and the gallery (its sections in config order) are made
    # again.
    (finished / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    assert set(planned_jobs(finished)) <= {"tables", "plots", "gallery", "all"}


def test_a_missing_detector_is_rebuilt_by_a_plain_run(finished):
    """A detector is a product (clustermine score / serve / export): deleting it, or a killed
    forced refit, is repaired by a plain run."""
    (finished / "results/tiny-a/detectors/tiny.mcm.h5").unlink()
    jobs = planned_jobs(finished)
    assert jobs.get("fit_detector") == 1, jobs
    run_workflow(finished)
    assert (finished / "results/tiny-a/detectors/tiny.mcm.h5").is_file()
    assert planned_jobs(finished) == {}


def test_a_model_setting_reruns_that_model_only(finished):
    """Mixed precision changes embeddings: the model's whole branch, nothing shared."""
    write_config(finished, lambda c: c["models"]["tiny-a"].update(precision="fp32"))
    jobs = planned_jobs(finished)
    assert "index_dataset" not in jobs and "corpus_names" not in jobs
    assert jobs["embed_images"] == 4 and jobs["merge_image_shards"] == 3  # 3 sets, one of 2 shards
    assert jobs["evaluate"] == len(METHODS)


def test_float16_storage_reencodes_the_images_not_the_text(finished):
    """Image embeddings stored as float16 are a result setting of that model's image files
    (their values change): every image file of the model again, no text embedding."""
    write_config(finished, lambda c: c["models"]["tiny-a"].update(storage="float16"))
    jobs = planned_jobs(finished)
    assert jobs["embed_images"] == 4 and jobs["merge_image_shards"] == 3
    assert not {"embed_text", "embed_class_names", "embed_conjugated"} & set(jobs), jobs
    assert jobs["evaluate"] == len(METHODS)


def dry_run(project: Path):
    return subprocess.run([*SNAKEMAKE, "-n", "--cores", "1"], cwd=project,
                          capture_output=True, text=True)


def test_misspelt_miner_parameter_is_named_at_start(tiny_project):
    write_config(tiny_project, lambda c: c["label_sets"]["posmine"].update(M=2))
    out = dry_run(tiny_project)
    assert out.returncode != 0 and "'M' was unexpected" in out.stdout + out.stderr


def test_ground_truth_method_without_class_names_is_a_config_error(tiny_project):
    data = tiny_project / "data"
    paths = sorted(p.relative_to(data / "id-train") for p in (data / "id-train").rglob("*.png"))
    (data / "train.txt").write_text("".join(f"{p} 0\n" for p in paths))  # integer labels only

    def edit(config):
        config["datasets"]["id-train"] = {
            "type": "filelist", "root": str(data / "id-train"), "list": str(data / "train.txt")
        }
        config["corpora"]["words"].pop("add_class_names_of")

    write_config(tiny_project, edit)
    out = dry_run(tiny_project)
    message = out.stdout + out.stderr
    assert out.returncode != 0
    assert "of idset 'tiny' uses label set 'gt' (miner gt)" in message
    assert "'id-train' has none" in message


def memory_asked(project: Path, rule: str) -> dict[str, tuple[int, list[str]]]:
    """Per method, the memory a dry run's ``rule`` job asks for and its input files."""
    run = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1", "--forcerun", "fit_detector"],
                         cwd=project, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    asked = {}
    for job in re.split(r"\n(?=(?:local)?rule )", run.stdout):
        if job.startswith((f"rule {rule}:", f"localrule {rule}:")):
            method = re.search(r"method=([\w-]+)", job).group(1)
            inputs = re.search(r"input: (.*)", job).group(1).split(", ")
            asked[method] = (int(re.search(r"mem_mb=(\d+)", job).group(1)), inputs)
    return asked


def test_detectors_ask_for_the_memory_of_what_they_read(finished, tmp_path):
    """A score that reads the ID-train embeddings (Mahalanobis) asks for memory for them; an
    Eq. 1 score reads only their attributes and does not (5 GB less with ImageNet train)."""
    project = tmp_path / "copy"
    shutil.copytree(finished, project, symlinks=True)
    train = project / "results/tiny-a/images/id-train.h5"
    os.truncate(train, train.stat().st_size + 50 * 2**20)  # 50 MB more, as far as sizes go
    asked = {method: mem for method, (mem, _) in memory_asked(project, "fit_detector").items()}
    assert set(asked) == set(METHODS)
    # The same inputs (label set gt), the train file counted twice (read whole) or not at all.
    assert asked["mahalanobis"] - asked["mcm"] >= 100
    assert asked["mcm"] == asked["maxlogit"] == asked["energy"]
    assert asked["mahalanobis"] == asked["relative-mahalanobis"]


def test_memory_requests_count_float16_image_rows_as_read(finished, tmp_path):
    """Readers return float32: a job reading a model's float16 image file whole holds twice
    the file's size, and asks for it (before, the request counted the file as stored)."""
    project = tmp_path / "copy"
    shutil.copytree(finished, project, symlinks=True)
    train = project / "results/tiny-a/images/id-train.h5"
    os.truncate(train, train.stat().st_size + 50 * 2**20)  # 50 MB more, as far as sizes go
    write_config(project)
    stored32 = {method: mem for method, (mem, _) in memory_asked(project, "fit_detector").items()}
    write_config(project, lambda c: c["models"]["tiny-a"].update(storage="float16"))
    stored16 = {method: mem for method, (mem, _) in memory_asked(project, "fit_detector").items()}
    # Mahalanobis reads the train file whole: stored as float16 its 50 MB more on disk are
    # 100 MB once read (50 more than as float32), asked for twice; MCM does not read it (its
    # calibration set is small). Counted as stored, both asked for the same.
    grown = {method: stored16[method] - stored32[method] for method in ("mahalanobis", "mcm")}
    assert grown["mahalanobis"] - grown["mcm"] >= 99, grown
    assert grown["mcm"] < 5, grown


def test_score_jobs_ask_for_the_largest_set_unless_they_adapt(finished, tmp_path):
    """A score job holds one scored set at a time (the largest counts), except for a score
    that adapts at test time, which streams the sets together and holds them all."""
    project = tmp_path / "copy"
    shutil.copytree(finished, project, symlinks=True)
    before = memory_asked(project, "score")
    scored = sorted(f for f in before["mcm"][1] if "/images/" in f)
    assert len(scored) >= 2  # an ID test set and a benchmark
    for name in scored[:2]:  # 50 MB more each, as far as sizes go
        os.truncate(project / name, (project / name).stat().st_size + 50 * 2**20)
    after = memory_asked(project, "score")
    adapting = {m for m, e in METHODS.items() if catalog.score(e["score"]).has("stream")}
    checked = set()
    for method, (mem, inputs) in after.items():
        if not set(scored[:2]) <= set(inputs):
            continue  # another ID set's images
        grown = mem - before[method][0]
        if method in adapting:
            assert grown >= 199, method  # both files, counted twice
        else:
            assert 95 <= grown <= 101, method  # one of them, counted twice
        checked.add(method)
    assert adapting <= checked and "mcm" in checked
