"""Every input path meets one bad-input corpus (tests/helpers/bad_inputs.py): one test per path,
parametrised over the cases that reach it, each case checked against its expected outcome
(accepted with the same result, a row with an error, or an error naming the input). One
detector bundle and one server serve every case; the tiny model has random weights."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from helpers import REPO, run_main
from helpers.bad_inputs import CASES, PATHS, Target, Written, cases_for, table
from helpers.service import make_detector, serving
from PIL import Image

import clustermine
from clustermine.config import ConfigError, load_workflow_config
from clustermine.datacheck import check_dataset
from clustermine.preflight import check_data
from clustermine.datasets import (
    DatasetError,
    DatasetIndex,
    index_imagefolder,
    read_index,
    write_index,
)
from clustermine.datasets.imagefolder import list_class_folders
from clustermine.deploy.service import Limits
from clustermine.encode import encode_images
from clustermine.h5io import ImageEmbeddings, read_image_embeddings, write_image_embeddings

# Images above Pillow's warning limit are refused by clustermine naming the file; pytest shows
# the warning Pillow gives on the way, which clustermine silences outside tests.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
MODEL = {"model_arch": "clustermine-tiny", "model_pretrained": "random-weights"}
GOOD_CONFIG = {
    "models": {"m": {"arch": "clustermine-tiny", "pretrained": None, "batch_size": 8}},
    "datasets": {
        "train": {"type": "imagefolder", "root": "data/train"},
        "test": {"type": "imagefolder", "root": "data/test"},
        "ood": {"type": "imagefolder", "root": "data/ood"},
    },
    "corpora": {"words": {"type": "wordlist", "path": "words.txt"}},
    "clusterers": {"km": {"method": "kmeans"}},
    "label_sets": {"gt": {"miner": "gt"},
                   "cm": {"miner": "clustermine", "clusterer": "km", "C": 4}},
    "methods": {"mcm": {"score": "mcm", "labels": "gt"}, "cm": {"score": "eq1", "labels": "cm"}},
    "idsets": {"tiny": {"train": "train", "test": ["test"], "corpus": "words",
                        "benchmarks": ["ood"]}},
}  # fmt: skip


def ids(case):
    return case.name


# --- the corpus table itself ----------------------------------------------------------------------


def test_every_case_has_an_outcome_on_every_path():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "case names are unique"
    for case in CASES:
        for path in PATHS:
            outcome = case.outcome(path)  # KeyError: an outcome is missing
            assert outcome.kind in ("same", "row", "error", "n/a"), (case.name, path)
            assert outcome.kind != "n/a" or outcome.text, f"{case.name} on {path}: no reason"
    for path in PATHS:
        assert cases_for(path), f"no case reaches {path}"
    assert len(table().splitlines()) == len(CASES) + 2


# --- shared inputs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The tiny detector (Eq. 1, calibrated) as a bundle, for the score, service and bundle
    paths."""
    return make_detector(tmp_path_factory.mktemp("corpus-detector"))


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from clustermine.models import load_model

    torch.set_num_threads(1)
    return load_model("clustermine-tiny", None, device="cpu")


@pytest.fixture(scope="module")
def service(bundle):
    """One server for every service case."""
    det = clustermine.load_detector(bundle, device="cpu")
    with serving(det, Limits()) as url:
        yield url


def image_target(tmp_path: Path) -> tuple[Target, Path]:
    """An image folder ``imgs/`` of two classes: ``other`` (one good image) and ``case`` (where
    the case writes); the good image itself lies outside it."""
    root, scratch = tmp_path / "imgs", tmp_path / "scratch"
    for folder in (root / "case", root / "other", scratch):
        folder.mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(scratch / "good.png")
    Image.fromarray(pixels).save(root / "other" / "good.png")
    return Target(root / "case", scratch / "good.png", scratch), root


def entry(written: Written, root: Path) -> str:
    """The bad input as a listing of ``root`` names it."""
    return written.path.relative_to(root).as_posix()


# --- (a) indexing an image folder -----------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("index"), ids=ids)
def test_index(case, tmp_path, caplog):
    target, root = image_target(tmp_path)
    written = case.write(target)
    outcome, name = case.outcome("index"), entry(written, root)
    if outcome.kind == "error":
        with pytest.raises(DatasetError) as err:
            index_imagefolder(root)
        outcome.check(str(err.value), written)
        return
    with caplog.at_level(logging.WARNING):
        index = index_imagefolder(root)
    write_index(tmp_path / "index.tsv", index)
    back = read_index(tmp_path / "index.tsv")
    assert back.paths == index.paths and list(back.labels) == list(index.labels)
    assert name in index.paths, index.paths
    assert index.class_names[index.labels[index.paths.index(name)]] == "case"
    broken = list_class_folders(root).broken
    if outcome.kind == "same":
        assert name not in broken, broken
    else:  # kept, and named with the reason
        outcome.check(broken[name], written)
        assert name in caplog.text and outcome.message(written).lower() in caplog.text.lower()


# --- (b) the data check ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("check"), ids=ids)
def test_check(case, tmp_path):
    target, root = image_target(tmp_path)
    written = case.write(target)
    outcome, name = case.outcome("check"), entry(written, root)
    result = check_data({"imgs": {"type": "imagefolder", "root": str(root)}}, max_missing=0.6)
    (check,) = result.checks
    table = result.tsv()
    if outcome.kind == "error":
        assert not result.ok and check.status == "ERROR"
        outcome.check(check.errors[0], written)
        return
    assert check.errors == [], check.errors
    listed = index_imagefolder(root).paths  # it counts what the index finds
    if outcome.kind == "same":
        assert check.status == "ok" and check.found == len(listed), (check, listed)
    else:
        (warning,) = check.warnings
        assert f"{name} (" in warning, warning
        outcome.check(warning, written)
        assert check.found == len(listed) - 1 and "warning" in table


# --- (c) encoding ---------------------------------------------------------------------------------


def embed_one(model, path: Path) -> np.ndarray:
    index = DatasetIndex(str(path.parent), [path.name], np.array([-1]))
    return encode_images(model, index, num_workers=0).embeddings[0]


@pytest.mark.parametrize("case", cases_for("encode"), ids=ids)
def test_encode(case, tmp_path, tiny_model, caplog):
    target, root = image_target(tmp_path)
    written = case.write(target)
    outcome, name = case.outcome("encode"), entry(written, root)
    if outcome.kind == "error":  # the encode jobs read the index: refused there
        with pytest.raises(DatasetError) as err:
            encode_images(tiny_model, index_imagefolder(root), num_workers=0)
        outcome.check(str(err.value), written)
        return
    index = index_imagefolder(root)
    with caplog.at_level(logging.WARNING):
        data = encode_images(tiny_model, index, num_workers=0, max_unreadable_fraction=1.0)
    assert len(data) + len(data.attrs["unreadable_files"]) == len(index)
    if outcome.kind == "same":
        assert name in data.paths and not data.attrs["unreadable_files"]
        want = embed_one(tiny_model, written.same_as)
        got = data.embeddings[data.paths.index(name)]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:
        assert name in data.attrs["unreadable_files"] and name not in data.paths
        (line,) = [r.getMessage() for r in caplog.records if str(root / name) in r.getMessage()]
        outcome.check(line, written)


# --- (d) clustermine score on a folder ------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("score"), ids=ids)
def test_score(case, tmp_path, bundle, capsys):
    target, _ = image_target(tmp_path)
    written = case.write(target)
    outcome = case.outcome("score")
    extra = [written.same_as] if outcome.kind == "same" else []
    out = tmp_path / "rows.jsonl"
    code, _, err = run_main(capsys, "score", bundle, target.folder, *extra, "-o", out,
                            "--no-progress", "--device", "cpu")  # fmt: skip
    if outcome.kind == "error":
        assert code == 2 and not out.exists()
        outcome.check(err, written)
        return
    assert code == 0, err
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    mine = rows[str(written.path)]
    if outcome.kind == "same":
        assert mine["error"] is None, mine
        assert mine["score"] == pytest.approx(rows[str(written.same_as)]["score"], rel=1e-5)
    else:
        assert mine["score"] is None and mine["ood"] is None
        outcome.check(mine["error"], written)


# --- (e) the HTTP service -------------------------------------------------------------------------


def wire_name(name: str) -> bytes:
    """A file name as a client sends it: its bytes, with the escapes browsers use (HTML5:
    quote, CR and LF percent-encoded)."""
    raw = os.fsencode(name)
    for char, escape in ((b'"', b"%22"), (b"\r", b"%0D"), (b"\n", b"%0A")):
        raw = raw.replace(char, escape)
    return raw


def post(url: str, name: str, data: bytes) -> requests.Response:
    """One image as a multipart upload named ``name`` (:func:`wire_name`)."""
    body = (b'--corpus\r\nContent-Disposition: form-data; name="files"; filename="'
            + wire_name(name) + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + data + b"\r\n--corpus--\r\n")  # fmt: skip
    return requests.post(f"{url}/score", data=body, timeout=60,
                         headers={"Content-Type": "multipart/form-data; boundary=corpus"})


def name_read_back(name: str) -> str:
    """The file name as the service reads it: the bytes sent, as UTF-8, else as Latin-1
    (HTTP's own)."""
    raw = wire_name(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@pytest.mark.parametrize("case", cases_for("service"), ids=ids)
def test_service(case, tmp_path, service):
    target, _ = image_target(tmp_path)
    written = case.write(target)
    outcome = case.outcome("service")
    r = post(service, written.path.name, written.path.read_bytes())
    if outcome.kind == "error":
        assert r.status_code == outcome.status, r.text
        outcome.check(r.json()["detail"], written)
    else:
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
        assert result["filename"] == name_read_back(written.path.name)
        want = post(service, "reference.png", written.same_as.read_bytes()).json()["results"]
        assert result["score"] == pytest.approx(want[0]["score"], rel=1e-5)
    assert requests.get(f"{service}/health", timeout=10).json() == {"status": "ok"}


# --- (f) bundles ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_embeddings(tmp_path_factory):
    """Image embeddings of the bundle's model, to score with the bundle."""
    path = tmp_path_factory.mktemp("corpus-embeddings") / "images.h5"
    emb = np.random.default_rng(1).normal(size=(5, 32)).astype(np.float32)
    names = [f"{i}.png" for i in range(5)]
    write_image_embeddings(path, ImageEmbeddings(emb, np.full(5, -1), names, attrs=MODEL))
    return path


def score_with(bundle: Path, embeddings: Path, capsys, out: Path):
    code, _, err = run_main(capsys, "score", bundle, "--embeddings", embeddings, "-o", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if code == 0 else None
    return code, err, rows


@pytest.mark.parametrize("case", cases_for("bundle"), ids=ids)
def test_bundle(case, tmp_path, bundle, bundle_embeddings, capsys):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "in").mkdir()
    written = case.write(Target(tmp_path / "in", bundle, scratch, main="manifest.json"))
    outcome = case.outcome("bundle")
    code, err, rows = score_with(written.path, bundle_embeddings, capsys, tmp_path / "rows.jsonl")
    if outcome.kind == "error":
        assert code == 2, err
        outcome.check(err, written)
        return
    assert code == 0, err
    _, _, want = score_with(written.same_as, bundle_embeddings, capsys, tmp_path / "want.jsonl")
    assert rows == want


# --- (g) config loading ---------------------------------------------------------------------------


def load_config(path: Path):
    cfg = load_workflow_config([path], SCHEMA, class_names_of=lambda spec: True)
    return [(key, repr(cfg.raw[key])) for key in sorted(cfg.raw)]


@pytest.mark.parametrize("case", cases_for("config"), ids=ids)
def test_config(case, tmp_path):
    scratch, folder = tmp_path / "scratch", tmp_path / "in"
    scratch.mkdir()
    folder.mkdir()
    good = scratch / "config.yaml"
    good.write_text(yaml.safe_dump(GOOD_CONFIG, sort_keys=False), encoding="utf-8")
    written = case.write(Target(folder, good, scratch))
    outcome = case.outcome("config")
    if outcome.kind == "error":
        with pytest.raises(ConfigError) as err:
            load_config(written.path)
        outcome.check(str(err.value), written)
        return
    assert load_config(written.path) == load_config(written.same_as)


# --- (h) precomputed embedding files --------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("embeddings"), ids=ids)
def test_embeddings(case, tmp_path):
    scratch, folder = tmp_path / "scratch", tmp_path / "in"
    scratch.mkdir()
    folder.mkdir()
    good = scratch / "images.h5"
    emb = np.random.default_rng(2).normal(size=(6, 8)).astype(np.float32)
    names, attrs = [f"{i}.png" for i in range(6)], {**MODEL, "logit_scale": 100.0}
    write_image_embeddings(good, ImageEmbeddings(emb, np.arange(6) % 2, names, ["a", "b"], attrs))
    written = case.write(Target(folder, good, scratch))
    outcome = case.outcome("embeddings")
    spec = {"type": "embeddings", "paths": {"m": str(written.path)},
            "models": {"m": {"arch": "clustermine-tiny"}}}  # fmt: skip
    check = check_dataset("pre", spec)
    if outcome.kind == "error":
        assert check.status == "ERROR", check
        outcome.check(check.errors[0], written)
        return
    assert check.errors == [] and check.found == 6, check.errors
    got, want = read_image_embeddings(written.path), read_image_embeddings(written.same_as)
    np.testing.assert_array_equal(got.embeddings, want.embeddings)
    assert got.embeddings.dtype == np.float32 and got.paths == want.paths
    assert list(got.labels) == list(want.labels) and got.class_names == want.class_names
