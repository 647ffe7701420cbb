"""The deployable detector on a tiny project: calibration made by a real workflow run, the
Python API, ``clustermine score`` and ``clustermine export``, and the errors for detector
files that are damaged, embeddings of another model and weights that are not at hand."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import make_tiny_project, read_config, run_main, run_workflow, write_config
from helpers.broken_model import fill, nan_checkpoint, small_filesystem
from PIL import Image

import clustermine
from clustermine.config import ConfigError, WorkflowConfig, validate_config
from clustermine.deploy import ModelUnavailable, UnreadableImages
from clustermine.deploy.bundle import BundleError, export_bundle
from clustermine.deploy.inputs import gather_paths
from clustermine.detectors import (
    Calibration,
    DetectorFileError,
    get_detector,
    load_detector as load_detector_file,
)
from clustermine.detectors.calibration import CalibrationError
from clustermine.h5io import EmbeddingFileError, TextEmbeddings, read_image_embeddings
from clustermine.metrics import fpr_at_tpr

CLI = [sys.executable, "-m", "clustermine.cli"]
DETECTOR = "results/tiny-a/detectors/tiny.mcm.h5"
ID_TEST = "results/tiny-a/images/id-test.h5"
SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def cli(*args, cwd, check=True):
    """The ``clustermine`` command in a process of its own."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                         env=env)  # fmt: skip
    if check and out.returncode != 0:
        raise AssertionError(f"clustermine {args} failed:\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The tiny project with one method (MCM over the class names), its detector fitted by
    a real Snakemake run."""
    root = make_tiny_project(tmp_path_factory.mktemp("deploy"))
    config = read_config(root)
    config["label_sets"] = {"gt": {"miner": "gt"}}
    config["methods"] = {"mcm": {"score": "mcm", "labels": "gt"}}
    config["datasets"]["id-test"]["shards"] = 1
    write_config(root, config)
    run_workflow(root, [DETECTOR, ID_TEST])
    return root


@pytest.fixture(scope="module")
def deployed(project):
    return clustermine.load_detector(project / DETECTOR, device="cpu")


def id_test_images(project):
    return gather_paths([project / "data" / "id-test"])


# --- calibration ------------------------------------------------------------------------------


def test_fit_job_calibrates_on_the_first_test_set(project):
    det = load_detector_file(project / DETECTOR, "cpu")
    held_out = read_image_embeddings(project / ID_TEST)
    assert det.calibration.dataset == "id-test"
    assert len(det.calibration) == len(held_out) == 15  # the corrupt image is left out
    want = np.sort(det.score(held_out.embeddings))
    np.testing.assert_allclose(det.calibration.scores, want, rtol=1e-9)
    assert det.calibration.attrs["embeddings"].endswith("id-test.h5")
    assert det.meta["preprocessing"] == held_out.attrs["preprocessing"]
    assert det.meta["model_pretrained"] == "random-weights"


def test_calibration_key_chooses_the_set_and_is_checked(tiny_project):
    config = read_config(tiny_project)
    validate_config(config, SCHEMA)
    assert WorkflowConfig(config).idset_calibration("tiny") == "id-test"
    config["idsets"]["tiny"]["calibration"] = "ood"
    validate_config(config, SCHEMA)
    cfg = WorkflowConfig(config)
    cfg.check()
    assert cfg.idset_calibration("tiny") == "ood" and "ood" in cfg.idset_datasets("tiny")
    config["idsets"]["tiny"]["calibration"] = "nope"
    with pytest.raises(ConfigError, match=r"idsets\.tiny\.calibration names dataset 'nope'"):
        WorkflowConfig(config).check()
    config["idsets"]["tiny"]["calibration"] = None
    assert WorkflowConfig(config).idset_calibration("tiny") is None


def test_threshold_and_p_values_follow_the_fpr95_convention():
    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(1, 1, 1000), rng.normal(-1, 1, 700)
    cal = Calibration(id_scores, "id")
    t = cal.threshold(0.95)
    assert np.mean(id_scores >= t) >= 0.95 > np.mean(id_scores >= np.nextafter(t, np.inf))
    assert np.mean(ood_scores >= t) == fpr_at_tpr(id_scores, ood_scores, 0.95)
    # The share of held-out ID scores at or below a score, ties included.
    small = Calibration([3.0, 1.0, 2.0, 2.0], "id")
    np.testing.assert_array_equal(small.p_values([0.5, 1.0, 2.0, 2.5, 9.0]),
                                  [0.0, 0.25, 0.75, 0.75, 1.0])  # fmt: skip
    assert small.threshold(0.5) == 2.0 and small.threshold(1.0) == 1.0
    assert small.threshold(0.75) == 2.0 and small.threshold(0.8) == 1.0
    with pytest.raises(CalibrationError, match="share in"):
        small.threshold(95)
    with pytest.raises(CalibrationError, match="NaN"):
        Calibration([1.0, np.nan], "broken")


# --- the Python API --------------------------------------------------------------------------


def test_api_scores_images_as_the_workflow_scores_their_embeddings(project, deployed):
    paths = id_test_images(project)
    out = deployed.predict(paths)
    assert len(out) == 16 and out.num_errors == 1
    bad = [i for i, e in enumerate(out.errors) if e]
    assert paths[bad[0]].endswith("corrupt.png") and np.isnan(out.scores[bad[0]])
    assert out.rows()[bad[0]]["ood"] is None and "corrupt.png" in out.rows()[bad[0]]["path"]
    # The workflow's embeddings of the same images give the same scores.
    held_out = read_image_embeddings(project / ID_TEST)
    by_path = dict(zip(paths, out.scores))
    want = deployed.detector.score(held_out.embeddings)
    got = [by_path[str(project / "data" / "id-test" / p)] for p in held_out.paths]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Decisions and p-values come from the calibration on these very images.
    ok = ~np.isnan(out.scores)
    assert deployed.threshold == deployed.calibration.threshold(0.95)
    assert [out.ood[i] for i in np.flatnonzero(ok)] == list(out.scores[ok] < deployed.threshold)
    # 95% of 15 rounds up to all 15: at most the lowest, re-encoded a hair lower, is flagged.
    assert out.num_ood <= 1
    np.testing.assert_allclose(out.p_values[ok], deployed.calibration.p_values(out.scores[ok]))
    info = deployed.describe()
    assert info["adapts_at_test_time"] is False and info["calibration"]["num_samples"] == 15
    assert info["model"]["arch"] == "clustermine-tiny" and "random weights" in info["warning"]
    assert info["method"] == "mcm" and info["idset"] == "tiny" and info["num_positives"] == 3


def test_float16_storage_halves_the_files_and_deployment_rounds_as_the_workflow(project,
                                                                              tmp_path):
    """A model with storage: float16: its image files hold float16 (half the bytes), the
    detector records the storage at calibration, and the deployed detector rounds the
    embeddings it makes the same way, so that an image scores exactly as in the workflow."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)
    config = read_config(copy)
    config["models"]["tiny-a"]["storage"] = "float16"
    write_config(copy, config)
    run_workflow(copy, [DETECTOR, ID_TEST])
    with h5py.File(copy / ID_TEST, "r") as f, h5py.File(project / ID_TEST, "r") as g:
        assert f["embeddings"].dtype == np.float16 and g["embeddings"].dtype == np.float32
        assert f.attrs["storage_dtype"] == "float16"
        full = g["embeddings"][()]
        np.testing.assert_array_equal(f["embeddings"][()], full.astype(np.float16))
    held_out = read_image_embeddings(copy / ID_TEST)
    assert held_out.embeddings.dtype == np.float32
    det = clustermine.load_detector(copy / DETECTOR, device="cpu")
    assert det.detector.meta["embedding_storage"] == "float16"
    paths = [str(copy / "data" / "id-test" / p) for p in held_out.paths]
    got = det.predict(paths).scores
    want = det.detector.score(held_out.embeddings)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    # Without the rounding the same images score measurably otherwise.
    unrounded = load_detector_file(project / DETECTOR).score(full)
    assert np.abs(unrounded - want).max() > 1e-6


def test_api_takes_pil_images_and_bytes_and_names_unreadable_ones(project, deployed):
    paths = [p for p in id_test_images(project) if not p.endswith("corrupt.png")][:4]
    want = deployed.score_images(paths)
    pil = [Image.open(p) for p in paths]
    raw = [Path(p).read_bytes() for p in paths]
    np.testing.assert_allclose(deployed.score_images(pil), want, rtol=1e-6)
    np.testing.assert_allclose(deployed.score_images(raw), want, rtol=1e-6)
    with pytest.raises(UnreadableImages, match=r"1 of 2 images.*corrupt\.png"):
        deployed.score_images([paths[0], project / "data/id-test/cat/corrupt.png"])
    deployed.set_threshold(threshold=float(np.median(want)))
    try:
        assert deployed.predict(paths).num_ood == 2
    finally:
        deployed.set_threshold(None, 0.95)


def test_embeddings_of_another_model_are_refused(project, deployed, tmp_path, capsys):
    held_out = read_image_embeddings(project / ID_TEST)
    other = dict(held_out.attrs, model_pretrained="laion2b_s34b_b79k")
    with pytest.raises(EmbeddingFileError, match="model mismatch: other.h5 has model_pretrained"):
        deployed.score_embeddings(held_out.embeddings, other, "other.h5")
    with pytest.raises(EmbeddingFileError, match="laion2b_s34b_b79k"):
        deployed.detector.score(held_out.embeddings, other)
    same = deployed.score_embeddings(held_out.embeddings, held_out.attrs)
    np.testing.assert_allclose(np.sort(same), deployed.calibration.scores, rtol=1e-9)
    # The command checks an embedding file's attributes too, naming the file.
    copy = tmp_path / "other.h5"
    shutil.copyfile(project / ID_TEST, copy)
    with h5py.File(copy, "a") as f:
        f.attrs["model_arch"] = "ViT-B-32"
    code, _, err = run_main(capsys, "score", project / DETECTOR, "--embeddings", copy)
    assert code == 2 and "model mismatch" in err and str(copy) in err
    code, out, err = run_main(capsys, "score", project / DETECTOR, "--embeddings",
                              project / ID_TEST)  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 16 and "scored 15 of 15 embeddings" in err


# --- the command -----------------------------------------------------------------------------


def test_command_agrees_with_the_api(project, deployed, tmp_path, capsys):
    data = project / "data"
    listing = tmp_path / "images.txt"
    listing.write_text(
        "# two images and one that is not there\n"
        f"{data / 'ood/tree/000.png'}\n{data / 'ood/boat/001.png'}\nmissing.png\n"
    )
    out = cli("score", DETECTOR, "data/id-test", listing, "--format", "jsonl", "--top-labels",
              "--no-progress", cwd=project)  # fmt: skip
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    images = [os.path.relpath(p, project) for p in gather_paths([data / "id-test"])]
    assert len(rows) == 19 and [r["path"] for r in rows[:16]] == images
    api = deployed.predict([project / r["path"] for r in rows[:16]] + [
        Path(r["path"]) for r in rows[16:]], top_labels=True)  # fmt: skip
    for row, want in zip(rows, api.rows()):
        assert (row["score"] is None) == (want["score"] is None)
        if row["score"] is not None:
            assert row["score"] == pytest.approx(want["score"], rel=1e-6)
            assert row["ood"] == want["ood"] and row["p_value"] == want["p_value"]
            assert row["top_positive"]["name"] == want["top_positive"]["name"]
    assert rows[-1]["error"].startswith("FileNotFoundError") and rows[-1]["score"] is None
    assert "2 not scored" in out.stderr and "flagged OOD at threshold" in out.stderr
    assert "drift: no full window yet (17 of 500 images)" in out.stderr  # 17 scored
    windowed = cli("score", DETECTOR, "data/id-test", "--drift-window", "10", "--no-progress",
                   cwd=project)  # fmt: skip
    assert "drift: 1 window(s) of 10 images tested at level 0.01" in windowed.stderr
    # TSV to a file, with a given threshold: every readable image below it is flagged.
    tsv = tmp_path / "out.tsv"
    run_main(capsys, "score", project / DETECTOR, data / "ood", "-o", tsv, "--threshold", "1e9")
    lines = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert lines[0] == ["path", "score", "p_value", "ood", "error"]
    assert len(lines) == 13 and {line[3] for line in lines[1:]} == {"true"}


def test_junk_and_truncated_detector_files_are_named(project, tmp_path, capsys):
    good = (project / DETECTOR).read_bytes()
    truncated, junk = tmp_path / "truncated.h5", tmp_path / "junk.h5"
    truncated.write_bytes(good[: len(good) // 2])
    junk.write_bytes(os.urandom(4096))
    for path in (truncated, junk):
        with pytest.raises(DetectorFileError, match=f"{path}: not a readable detector file"):
            load_detector_file(path)
        code, _, err = run_main(capsys, "score", path, project / "data" / "ood")
        assert code == 2 and f"error: {path}: not a readable detector file" in err
    with pytest.raises(DetectorFileError, match="not a clustermine detector file"):
        clustermine.load_detector(project / ID_TEST)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        clustermine.load_detector(tmp_path / "absent.h5")


@pytest.mark.parametrize("storage", ["bfloat8", "", 16])
def test_a_detector_recording_an_unknown_storage_is_named(project, tmp_path, capsys, storage):
    """The storage a detector rounds new embeddings to comes from its file: a value that is
    not a known storage is refused with the file named, rather than scoring unrounded."""
    path = tmp_path / "odd.h5"
    shutil.copy(project / DETECTOR, path)
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["meta"])
        f.attrs["meta"] = json.dumps({**meta, "embedding_storage": storage})
    with pytest.raises(ValueError, match=f"{path}: embedding storage must be one of"):
        clustermine.load_detector(path, device="cpu")
    code, _, err = run_main(capsys, "score", path, project / "data" / "ood")
    assert code == 2 and f"{path}: embedding storage must be one of" in err


# --- bundles ---------------------------------------------------------------------------------


def test_bundle_scores_identically_without_the_results_tree(project, deployed, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    code, _, err = run_main(capsys, "export", project / DETECTOR, bundle)
    assert code == 0 and "exported mcm" in err
    assert sorted(p.name for p in bundle.iterdir()) == [
        "detector.h5", "label_names.tsv", "manifest.json", "weights.safetensors"]  # fmt: skip
    for path in bundle.iterdir():  # nothing pickled (torch's .pt files are zip + pickle)
        assert not path.read_bytes()[:2] in (b"\x80\x02", b"PK"), path
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["arch"] == "clustermine-tiny"
    assert manifest["model"]["pretrained"] == "random-weights"
    assert manifest["labels"]["positives"] == ["car", "cat", "dog"]
    assert manifest["calibration"]["threshold"] == deployed.threshold
    assert {"clustermine", "open_clip_torch", "torch"} <= set(manifest["versions"]["exported_with"])
    paths = gather_paths([project / "data" / "ood"])
    images = tmp_path / "images"
    shutil.copytree(project / "data" / "ood", images)
    want = deployed.score_images(paths)
    away = project / "results.away"
    (project / "results").rename(away)
    try:
        got = cli("score", bundle, images, "--format", "jsonl", cwd=tmp_path)
        scores = [json.loads(line)["score"] for line in got.stdout.splitlines()]
        np.testing.assert_array_equal(scores, want)
        from_api = clustermine.load_detector(bundle, device="cpu")
        np.testing.assert_array_equal(from_api.score_images(gather_paths([images])), want)
        assert from_api.describe()["bundle"] is True
    finally:
        away.rename(project / "results")
    with pytest.raises(BundleError, match="not empty"):
        export_bundle(project / DETECTOR, bundle)


def test_bundle_loading_checks_files_and_versions(project, tmp_path, caplog):
    bundle = tmp_path / "bundle"
    export_bundle(project / DETECTOR, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["versions"]["exported_with"]["torch"] = "1.0.0"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        det = clustermine.load_detector(bundle)
    assert "torch 1.0.0 (here" in caplog.text
    assert det.describe()["version_differences"]["torch"]["bundle"] == "1.0.0"
    weights = bundle / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum differs"):
        clustermine.load_detector(bundle)
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="upgrade clustermine"):
        clustermine.load_detector(bundle)
    with pytest.raises(BundleError, match="not a detector bundle"):
        clustermine.load_detector(tmp_path)


# --- the model's weights ---------------------------------------------------------------------


def test_relative_checkpoint_is_found_beside_the_workflow_or_named(project, tmp_path):
    """A detector records the checkpoint path as the workflow's config gave it, relative to
    the workflow's folder: found from there; elsewhere a clear error, or ``checkpoint=``."""
    import torch

    from clustermine.models import load_model

    loaded = load_model("clustermine-tiny", None, "cpu")
    workflow = tmp_path / "workflow"
    (workflow / "models").mkdir(parents=True)
    torch.save({"state_dict": loaded.model.state_dict()}, workflow / "models" / "tiny.pt")
    det = load_detector_file(project / DETECTOR, "cpu")
    det.meta["model_pretrained"] = "models/tiny.pt"
    det.save(workflow / "results/tiny-a/detectors/tiny.mcm.h5")
    image = gather_paths([project / "data" / "ood"])[:2]
    want = clustermine.load_detector(project / DETECTOR).score_images(image)

    found = clustermine.load_detector(workflow / "results/tiny-a/detectors/tiny.mcm.h5")
    np.testing.assert_array_equal(found.score_images(image), want)
    elsewhere = tmp_path / "elsewhere.h5"
    shutil.copyfile(workflow / "results/tiny-a/detectors/tiny.mcm.h5", elsewhere)
    lost = clustermine.load_detector(elsewhere)
    with pytest.raises(ModelUnavailable, match=r"checkpoint models/tiny.pt.*--checkpoint FILE"):
        lost.score_images(image)
    given = clustermine.load_detector(elsewhere, checkpoint=workflow / "models" / "tiny.pt")
    np.testing.assert_array_equal(given.score_images(image), want)
    # Embeddings can still be scored without the model.
    held_out = read_image_embeddings(project / ID_TEST)
    assert len(lost.score_embeddings(held_out.embeddings)) == 15


def test_detector_without_model_attributes_scores_embeddings_only(tmp_path):
    rng = np.random.default_rng(0)
    texts = TextEmbeddings(rng.normal(size=(3, 8)).astype(np.float32), ["a", "b", "c"])
    det = get_detector("maxlogit").fit(None, texts, None, 100.0, device="cpu")
    det.save(tmp_path / "plain.h5")
    plain = clustermine.load_detector(tmp_path / "plain.h5")
    x = rng.normal(size=(5, 8)).astype(np.float32)
    out = plain.predict(embeddings=x)
    assert out.threshold is None and out.p_values is None and out.ood == [None] * 5
    with pytest.raises(ModelUnavailable, match="records no model"):
        plain.score_images([Image.new("RGB", (8, 8))])


def test_a_detector_that_adapts_keeps_its_state_across_calls_until_reset(tmp_path):
    from clustermine import catalog

    stateful = sorted(name for name, p in catalog.SCORES.items() if p.stateful)
    if not stateful:
        pytest.skip("no score of the catalog adapts at test time")
    rng = np.random.default_rng(0)
    t = rng.normal(size=(40, 16)).astype(np.float32)
    pos = TextEmbeddings(t[:5], [f"p{i}" for i in range(5)])
    neg = TextEmbeddings(t[5:], [f"n{i}" for i in range(35)])
    get_detector(stateful[0]).fit(None, pos, neg, 100.0, device="cpu").save(tmp_path / "s.h5")
    det = clustermine.load_detector(tmp_path / "s.h5")
    info = det.describe()
    assert info["adapts_at_test_time"] is True and "reset()" in info["state_note"]
    x = rng.normal(size=(64, 16)).astype(np.float32)
    first, second = det.score_embeddings(x), det.score_embeddings(x)
    assert not np.allclose(first, second)  # it learned from the first call
    det.reset()
    np.testing.assert_allclose(det.score_embeddings(x), first)


def test_weights_of_a_tag_not_available_offline_are_named(tmp_path):
    rng = np.random.default_rng(0)
    texts = TextEmbeddings(rng.normal(size=(3, 1024)).astype(np.float32), ["a", "b", "c"])
    meta = {"model": "rn50", "model_arch": "RN50", "model_pretrained": "openai"}
    get_detector("maxlogit").fit(None, texts, None, 100.0, meta=meta, device="cpu").save(
        tmp_path / "rn50.h5"
    )
    det = clustermine.load_detector(tmp_path / "rn50.h5", device="cpu")
    with pytest.raises(ModelUnavailable, match=r"cannot build its model RN50 with weights "
                       r"'openai'(.|\n)*--checkpoint FILE"):  # fmt: skip
        det.score_images([Image.new("RGB", (8, 8))])


# --- bundles: the manifest is an index of checksummed files, never believed on its own -------


@pytest.fixture(scope="module")
def bundle(project, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "bundle"
    export_bundle(project / DETECTOR, out)
    return out


def edited_bundle(bundle: Path, dest: Path, edit) -> Path:
    """A copy of ``bundle`` at ``dest`` whose manifest ``edit(manifest)`` changed."""
    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    edit(manifest)
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


def set_key(manifest: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        manifest = manifest[key]
    manifest[last] = value


@pytest.mark.parametrize(
    "key, value",
    [
        ("model.pretrained", "openai"),
        ("model.arch", "ViT-B-32"),
        ("model.random_weights", False),
        ("calibration.threshold", 0.0),
        ("labels.positives", ["car", "cat", "dog", "bird"]),
        ("labels.num_negatives", 7),
        ("detector.tau", 2.0),
        ("detector.method", "neglabel"),
        ("versions.embeddings_made_with", {"torch": "1.0.0"}),
    ],
)
def test_a_manifest_that_disagrees_with_the_bundles_files_is_refused(bundle, tmp_path, key,
                                                                    value):  # fmt: skip
    """What describe() and /info report comes from the checksummed detector file; a manifest
    stating something else was edited after export, and is refused naming the key."""
    edited = edited_bundle(bundle, tmp_path / "edited", lambda m: set_key(m, key, value))
    with pytest.raises(BundleError, match=rf"manifest\.json: {re.escape(key)}: .*export"):
        clustermine.load_detector(edited)
    info = clustermine.load_detector(bundle).describe()
    assert info["model"]["pretrained"] == "random-weights" and "random weights" in info["warning"]


def test_a_labels_file_that_disagrees_with_the_detector_file_is_refused(bundle, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    labels = edited / "label_names.tsv"
    labels.write_text(labels.read_text().replace("positive\tcat", "positive\tlion"))
    with pytest.raises(BundleError, match=r"label_names\.tsv.*label names of the detector file"):
        clustermine.load_detector(edited)


def test_a_bundle_made_when_the_label_names_were_labels_tsv_still_loads(bundle, tmp_path):
    """The label-names file was renamed apart from the label-set files (a different format
    under the same name); the manifest names the file, so older bundles load unchanged."""
    def old_name(manifest):
        manifest["labels"]["file"] = "labels.tsv"

    old = edited_bundle(bundle, tmp_path / "old", old_name)
    (old / "label_names.tsv").rename(old / "labels.tsv")
    def facts(info):  # where it was loaded from aside
        info.pop("source")
        info["model"].pop("weights_file")
        return info

    old_info = facts(clustermine.load_detector(old).describe())
    assert old_info == facts(clustermine.load_detector(bundle).describe())
    assert old_info["positives"] == ["car", "cat", "dog"]


def test_bundle_files_must_lie_inside_the_bundle(project, bundle, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(project / DETECTOR, other / "detector.h5")
    digest = hashlib.sha256((other / "detector.h5").read_bytes()).hexdigest()
    cases = {
        "detector.file": {"detector": {"file": "../other/detector.h5", "sha256": digest}},
        # Refused before it is opened: the checksum is never computed.
        "model.weights.file": {"model": {"weights": {"file": "/etc/passwd", "sha256": "0" * 64,
                                                     "bytes": 1}}},  # fmt: skip
    }
    for i, (key, change) in enumerate(cases.items()):
        def edit(manifest, change=change):
            for section, values in change.items():
                manifest[section].update(values)

        edited = edited_bundle(bundle, tmp_path / f"edited{i}", edit)
        with pytest.raises(BundleError, match=rf"{re.escape(key)} .* is outside the bundle"):
            clustermine.load_detector(edited)
    # A symbolic link out of the bundle is refused too, checksum or not.
    linked = tmp_path / "linked"
    shutil.copytree(bundle, linked)
    (linked / "detector.h5").unlink()
    (linked / "detector.h5").symlink_to(other / "detector.h5")
    with pytest.raises(BundleError, match=r"detector\.file .* is outside the bundle"):
        clustermine.load_detector(linked)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("detector"), r"detector is missing"),
        (lambda m: m["detector"].pop("sha256"), r"detector\.sha256 is missing"),
        (lambda m: m.update(model=None), r"model: None is not of type 'object'"),
        (lambda m: m["detector"].update(file=5), r"detector\.file: 5 is not of type 'string'"),
        (lambda m: m["detector"].update(sha256="abc"), r"detector\.sha256: 'abc' does not match"),
        (lambda m: m.update(extra=1), r"Additional properties .*\('extra' was unexpected\)"),
    ],
)
def test_a_malformed_manifest_names_the_key(bundle, tmp_path, edit, message):
    edited = edited_bundle(bundle, tmp_path / "edited", edit)
    with pytest.raises(BundleError, match=rf"manifest\.json: (key )?{message}"):
        clustermine.load_detector(edited)


@pytest.mark.parametrize(
    "text, message",
    [("{", "not valid JSON"), ("[1, 2]", "not a JSON object"), ('"x"', "not a JSON object")],
)
def test_a_manifest_that_is_not_a_json_object_is_named(bundle, tmp_path, text, message):
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    (edited / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match=rf"manifest\.json: {message}"):
        clustermine.load_detector(edited)


# --- no silent wrong results: non-finite embeddings, full disks -------------------------------


def test_non_finite_embeddings_get_an_error_in_their_row(project, deployed, tmp_path, capsys):
    held_out = read_image_embeddings(project / ID_TEST)
    x = held_out.embeddings[:4].copy()
    x[1, 0], x[2, 3] = np.nan, np.inf
    rows = deployed.predict(embeddings=x).rows()
    assert [bool(r["error"]) for r in rows] == [False, True, True, False]
    for row in rows[1:3]:
        assert "NaN or infinite" in row["error"]
        assert row["score"] is None and row["ood"] is None and row["p_value"] is None
    assert all(isinstance(r["ood"], bool) for r in (rows[0], rows[3]))
    with pytest.raises(ValueError, match=r"2 of 4 embeddings .*NaN or infinite.*rows 1, 2"):
        deployed.score_embeddings(x)
    # The command refuses an embedding file holding such a row, naming it (its reader checks).
    broken = tmp_path / "broken.h5"
    shutil.copyfile(project / ID_TEST, broken)
    with h5py.File(broken, "a") as f:
        f["embeddings"][1, 0] = np.nan
    code, out, err = run_main(capsys, "score", project / DETECTOR, "--embeddings", broken)
    assert code == 2 and out == "" and f"{broken}: 1 of 15 embedding rows are not finite" in err


def test_a_model_giving_nan_embeddings_gets_an_error_per_image(project, tmp_path):
    checkpoint = nan_checkpoint(tmp_path / "nan.pt")
    det = clustermine.load_detector(project / DETECTOR, checkpoint=checkpoint, device="cpu")
    paths = [p for p in id_test_images(project) if not p.endswith("corrupt.png")][:3]
    out = det.predict(paths)
    assert out.num_errors == 3 and out.ood == [None] * 3
    assert all("NaN or infinite" in e for e in out.errors)
    with pytest.raises(ValueError, match=r"3 of 3 embeddings"):
        det.score_images(paths)


def test_export_to_a_full_disk_names_the_file_and_leaves_nothing(project, tmp_path):
    room = (project / DETECTOR).stat().st_size + 256 * 1024  # the detector fits, the weights not
    with small_filesystem(tmp_path / "small", room) as disk:
        out = cli("export", DETECTOR, disk / "bundle", cwd=project, check=False)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith(f"clustermine export: error: {disk / 'bundle'}/weights.safetensors: "
                               "cannot write it: No space left on device"), last  # fmt: skip
        assert list(disk.iterdir()) == []


def test_score_output_to_a_full_disk_names_the_file_and_leaves_nothing(project, tmp_path):
    with small_filesystem(tmp_path / "small", 64 * 1024) as disk:
        fill(disk)
        out = cli("score", DETECTOR, "data/ood", "-o", disk / "rows.tsv", "--no-progress",
                  cwd=project, check=False)  # fmt: skip
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith(f"clustermine score: error: {disk / 'rows.tsv'}: cannot write")
        assert "no space left on device" in last.lower(), last
        assert [p.name for p in disk.iterdir()] == ["filler"]


# --- the package's structure -----------------------------------------------------------------


def test_the_deployed_detectors_loader_has_a_name_of_its_own():
    """One function of each name (the import cycles: tests/test_structure.py)."""
    from clustermine import deploy

    assert "load_detector" not in deploy.__all__ and "load_deployed_detector" in deploy.__all__


def test_remine_refuses_a_score_it_cannot_refit_before_encoding(project, tmp_path):
    """A Mahalanobis detector reads ID-train images, which deployment images do not give:
    one line, before any image is read, and no file written. (The MCM detector of this
    project re-mines: its label set keeps the corpus as negatives.)"""
    mcm = load_detector_file(project / DETECTOR, "cpu")
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20, mcm.embedding_dim)).astype(np.float32)
    maha = get_detector("mahalanobis").fit(train, mcm.text_pos, mcm.text_neg, mcm.logit_scale,
                                           train_labels=np.arange(20) % 3, meta=mcm.meta)
    maha.save(tmp_path / "maha.h5")
    out = cli("remine", tmp_path / "maha.h5", "data/ood", "-o", tmp_path / "new.h5",
              cwd=project, check=False)  # fmt: skip
    assert out.returncode != 0 and "also needs train_embeddings" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "new.h5").exists()
