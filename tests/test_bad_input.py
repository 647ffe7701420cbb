"""Bad input gets a named error or a logged skip, never a silent wrong result (docs/workflow.md,
"What happens with bad input"). Library rows are unit tests; workflow rows are real Snakemake
runs."""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest
import torch
import yaml
from helpers import make_image_folder, snakemake, write_config
from PIL import Image

from clustermine.datasets import DatasetError, index_imagefolder, read_index, write_index
from clustermine.detectors import get_detector
from clustermine.encode import encode_images
from clustermine.atomic import atomic_path
from clustermine.h5io import (
    EmbeddingFileError,
    ImageEmbeddings,
    TextEmbeddings,
    check_same_model,
    read_image_embeddings,
    read_text_embeddings,
    write_image_embeddings,
    write_text_embeddings,
)
from clustermine.images import ImageTooLarge, load_rgb
from clustermine.models import load_model

MODEL = {"model_arch": "clustermine-tiny", "model_pretrained": "random-weights"}


@pytest.fixture(scope="module")
def tiny_model():
    torch.set_num_threads(1)
    return load_model("clustermine-tiny", None, device="cpu")


# --- embedding arrays: one check wherever they are read -----------------------------------------


def write_raw(path, emb, **attrs):
    """An embedding file written with h5py directly (as another tool might)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=emb)
        f.create_dataset("names", data=np.array([f"n{i}" for i in range(len(emb))], dtype=object),
                         dtype=h5py.string_dtype())
        for key, value in {**MODEL, **attrs}.items():
            f.attrs[key] = value


def test_non_finite_rows_are_refused_naming_the_file(tmp_path):
    emb = np.ones((6, 4), np.float32)
    emb[[1, 4], 2] = [np.nan, np.inf]
    write_raw(tmp_path / "nan.h5", emb)
    with pytest.raises(EmbeddingFileError, match=r"nan\.h5: 2 of 6 embedding rows are not finite"):
        read_image_embeddings(tmp_path / "nan.h5")
    with pytest.raises(EmbeddingFileError, match=r"nan\.h5: 2 of 6 .* first rows \[1, 4\]"):
        read_text_embeddings(tmp_path / "nan.h5")
    # Nor is such a file ever written.
    with pytest.raises(EmbeddingFileError, match="not finite"):
        write_image_embeddings(tmp_path / "out.h5", ImageEmbeddings(emb, np.zeros(6), ["p"] * 6))
    assert not (tmp_path / "out.h5").exists()


def test_non_float_one_dimensional_and_inconsistent_arrays_are_refused(tmp_path):
    write_raw(tmp_path / "int.h5", np.ones((3, 4), np.int64))
    with pytest.raises(EmbeddingFileError, match="must be floating point"):
        read_text_embeddings(tmp_path / "int.h5")
    write_raw(tmp_path / "flat.h5", np.ones(4, np.float32))
    with pytest.raises(EmbeddingFileError, match=r"2-D \[N, D\]"):
        read_text_embeddings(tmp_path / "flat.h5")
    write_raw(tmp_path / "dim.h5", np.ones((3, 4), np.float32), embedding_dim=8)
    with pytest.raises(EmbeddingFileError, match="dimension 4 but the file records embedding_dim=8"):
        read_text_embeddings(tmp_path / "dim.h5")


def test_files_of_other_dimensions_are_a_model_mismatch_naming_both(tmp_path):
    write_text_embeddings(tmp_path / "classes.h5", TextEmbeddings(np.eye(3, 4), ["a", "b", "c"],
                                                                  attrs=MODEL))
    write_text_embeddings(tmp_path / "corpus.h5", TextEmbeddings(np.eye(3, 6), ["a", "b", "c"],
                                                                 attrs=MODEL))
    a, b = read_text_embeddings(tmp_path / "classes.h5"), read_text_embeddings(tmp_path / "corpus.h5")
    with pytest.raises(EmbeddingFileError, match=r"classes\.h5 has embedding_dim=4 but .*corpus\.h5"):
        check_same_model([(tmp_path / "classes.h5", a.attrs), (tmp_path / "corpus.h5", b.attrs)])


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, pixels, expected",
    [
        ("I;16", np.full((8, 8), 32896, np.uint16), 128),  # a mid-grey 16-bit PNG
        ("I", np.full((8, 8), 65535, np.int32), 255),  # 16-bit data in a 32-bit mode
        ("F", np.full((8, 8), 0.25, np.float32), 64),  # unit-range floats (TIFF)
    ],
)
def test_high_bit_depth_images_are_rescaled_not_clipped(tmp_path, mode, pixels, expected):
    path = tmp_path / ("img.png" if mode == "I;16" else "img.tif")
    Image.fromarray(pixels, mode if mode != "I;16" else None).save(path)
    with Image.open(path) as img:
        assert img.mode == mode
        clipped = np.asarray(img.convert("RGB")).mean()
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (8, 8, 3) and abs(rgb.mean() - expected) <= 1
    if mode != "F":
        assert clipped == 255  # what Pillow's own conversion does


def test_images_above_the_pixel_limit_are_refused_naming_the_file(tmp_path, caplog):
    path = tmp_path / "huge.png"
    Image.new("1", (12000, 12000)).save(path)  # 144 Mpixels, tiny on disk
    with pytest.raises(ImageTooLarge, match=r"huge\.png: 12000x12000 = 144,000,000 pixels, .*"
                                            "encode.max_image_pixels"):
        load_rgb(path)
    small = tmp_path / "small.png"
    Image.new("RGB", (30, 20)).save(small)
    with pytest.raises(ImageTooLarge, match="small.png"):
        load_rgb(small, max_pixels=100)
    assert load_rgb(path, max_pixels=None).size == (12000, 12000)


def test_a_file_name_with_a_newline_is_indexed_and_encoded(tmp_path, tiny_model):
    root = make_image_folder(tmp_path / "imgs", {"cat": 2, "dog": 2}, seed=0)
    odd = root / "dog" / "two\nlines\tand tab.png"
    (root / "dog" / "000.png").rename(odd)
    index = index_imagefolder(root)
    write_index(tmp_path / "index.tsv", index)
    back = read_index(tmp_path / "index.tsv")
    assert back.paths == index.paths and "dog/two\nlines\tand tab.png" in back.paths
    data = encode_images(tiny_model, back, num_workers=0, batch_size=2)
    assert len(data) == 4 and not data.attrs["unreadable_files"]


def test_a_malformed_index_line_is_named(tmp_path):
    root = make_image_folder(tmp_path / "imgs", {"cat": 2}, seed=0)
    write_index(tmp_path / "index.tsv", index_imagefolder(root))
    with open(tmp_path / "index.tsv", "a") as f:
        f.write("dangling\n")
    with pytest.raises(DatasetError, match=r"index\.tsv:5: malformed index line 'dangling'"):
        read_index(tmp_path / "index.tsv")


def test_an_empty_class_folder_is_not_a_class_and_one_class_is_warned(tmp_path, caplog):
    root = make_image_folder(tmp_path / "imgs", {"cat": 2, "dog": 2}, seed=0)
    (root / "empty").mkdir()
    with caplog.at_level(logging.WARNING):
        index = index_imagefolder(root)
    assert index.class_names == ["cat", "dog"] and set(index.labels) == {0, 1}
    assert "'empty' holds no images and is not a class" in caplog.text
    caplog.clear()
    only = make_image_folder(tmp_path / "one", {"cat": 3}, seed=1)
    with caplog.at_level(logging.WARNING):
        index_imagefolder(only)
    assert "has a single class ('cat')" in caplog.text


@pytest.mark.parametrize("score", ["mcm", "relative_mahalanobis", "plp"])
def test_scores_that_need_two_id_classes_warn_with_one(score, caplog):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 6)).astype(np.float32)
    pos = TextEmbeddings(rng.normal(size=(1, 6)).astype(np.float32), ["cat"])
    params = {"epochs": 1} if score == "plp" else {}
    with caplog.at_level(logging.WARNING):
        det = get_detector(score).fit(train, pos, None, 100.0, params, device="cpu")
    assert det.fit_stats["warnings"] and score in caplog.text
    assert np.ptp(det.score(train)) < 1e-6  # constant indeed


# --- interrupted writes -----------------------------------------------------------------------


def test_stale_temporary_files_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "result.h5"
    stale = tmp_path / ".result.h5.k2j4x9q_.tmp"  # what a kill -9 during a write leaves
    other = tmp_path / ".result.h5.extra.k2j4x9q_.tmp"  # another target's: kept
    stale.write_text("partial")
    other.write_text("partial")
    with atomic_path(target) as tmp:
        tmp.write_text("complete")
    assert target.read_text() == "complete" and not stale.exists() and other.exists()


# --- config mistakes, at start --------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["corpora"]["words"].update(add_class_names_of=["id-trian"]),
         "corpora.words.add_class_names_of names dataset 'id-trian', which is not declared"),
        (lambda c: c["idsets"]["tiny"].update(models=["tiny-b"]),
         "idsets.tiny.models names model 'tiny-b', which is not declared under models"),
    ],
)
def test_config_reference_errors_stop_the_workflow_at_start(tiny_project, edit, message):
    config = yaml.safe_load((tiny_project / "config.yaml").read_text())
    edit(config)
    write_config(tiny_project, config)
    out = snakemake(tiny_project, "-n", "--cores", "1")
    assert out.returncode != 0 and message in out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "KeyError" not in out.stdout + out.stderr


def test_a_key_given_twice_stops_the_workflow_with_its_line(tiny_project):
    text = (tiny_project / "config.yaml").read_text()
    (tiny_project / "config.yaml").write_text(text + "seed: 3\n")
    out = snakemake(tiny_project, "-n", "--cores", "1")
    assert out.returncode != 0
    assert "key 'seed' is given twice in the same mapping" in out.stdout + out.stderr


# --- precomputed embeddings with non-finite rows, through the workflow -------------------------


def precomputed_project(root, nan_in):
    """ID-train, test and OOD sets and a corpus, all precomputed (no model is run)."""
    rng = np.random.default_rng(0)
    attrs = {**MODEL, "logit_scale": 100.0}
    names = [f"word{i}" for i in range(12)]
    write_text_embeddings(root / "corpus.h5", TextEmbeddings(
        rng.normal(size=(12, 8)).astype(np.float32), names, attrs={**attrs, "corpus": "c"}))
    datasets = {}
    for name, n in (("train", 30), ("test", 10), ("ood", 10)):
        emb = rng.normal(size=(n, 8)).astype(np.float32)
        path = root / f"{name}.h5"
        write_image_embeddings(path, ImageEmbeddings(emb, np.full(n, -1), [f"{i}.png" for i in range(n)],
                                                     attrs=attrs))
        if name in nan_in:
            with h5py.File(path, "a") as f:
                f["embeddings"][3] = np.nan
        datasets[name] = {"type": "embeddings", "paths": {"m": str(path)}}
    config = {
        "models": {"m": {"arch": "clustermine-tiny", "pretrained": None}},
        "datasets": datasets,
        "corpora": {"c": {"type": "embeddings", "paths": {"m": str(root / "corpus.h5")}}},
        "clusterers": {"km": {"method": "kmeans"}},
        "label_sets": {"cm": {"miner": "clustermine", "clusterer": "km", "C": 3}},
        "methods": {"cm": {"score": "eq1", "labels": "cm"}},
        "idsets": {"p": {"train": "train", "test": ["test"], "corpus": "c", "benchmarks": ["ood"]}},
    }
    write_config(root, config)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    "broken, reader",
    [("train", "logs/m/clusters/train.km-C3.log"), ("ood", "logs/m/scores/p.cm.log")],
)
def test_non_finite_precomputed_embeddings_fail_at_their_check(tmp_path, broken, reader):
    """Refused by the dataset's check, which every job reading the file needs, so the job
    that would read it first (clustering for the train set, scoring for a benchmark) never
    starts, even with --keep-going."""
    project = precomputed_project(tmp_path, nan_in=(broken,))
    out = snakemake(project, "--cores", "1", "--keep-going")
    assert out.returncode != 0
    log = (project / "logs" / "checked" / f"{broken}.log").read_text()
    assert f"{broken}.h5: 1 of " in log and "embedding rows are not finite" in log
    assert not (project / reader).exists()
    assert not list((project / "results").rglob("metrics/*.json"))


# --- folders: one listing for the data check, the index and `clustermine score` ---------------


def linked_folder(tmp_path):
    """``imgs/dog`` holds 3 images, a link to a folder of 4 more, a dangling link, a link to
    itself and a link back to its own folder."""
    root = make_image_folder(tmp_path / "imgs", {"dog": 3}, seed=0)
    more = make_image_folder(tmp_path / "elsewhere", {"more": 4}, seed=1) / "more"
    (root / "dog" / "more").symlink_to(more, target_is_directory=True)
    (root / "dog" / "gone.png").symlink_to(tmp_path / "deleted.png")
    (root / "dog" / "self.png").symlink_to("self.png")
    (root / "dog" / "up").symlink_to(root, target_is_directory=True)
    return root


def test_scoring_a_folder_gives_broken_links_a_row_with_the_reason(tmp_path):
    from clustermine.deploy.inputs import ImageBatchData, gather_paths

    root = linked_folder(tmp_path)
    (root / "dog" / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(root / "dog" / ".hidden" / "x.png")
    paths = gather_paths([root])
    names = [os.path.relpath(p, root) for p in paths]
    assert names == ["dog/000.png", "dog/001.png", "dog/002.png", "dog/gone.png",
                     *[f"dog/more/{i:03d}.png" for i in range(4)], "dog/self.png", "dog/up"]
    data = ImageBatchData(paths, lambda img: torch.zeros(1), (1,), None)
    errors = {n: data[i][1] for i, n in enumerate(names)}
    assert [n for n, e in errors.items() if e] == ["dog/gone.png", "dog/self.png", "dog/up"]
    assert "dangling symbolic link" in errors["dog/gone.png"]
    assert "deleted.png" in errors["dog/gone.png"]
    assert "loop" in errors["dog/self.png"] and "loop" in errors["dog/up"]


def test_a_linked_folder_is_indexed_and_encoded_as_the_check_counts_it(tmp_path, tiny_model):
    from clustermine.datacheck import check_dataset

    root = linked_folder(tmp_path)
    spec = {"type": "imagefolder", "root": str(root)}
    check = check_dataset("linked", spec, max_missing=0.5)
    index = index_imagefolder(root)
    data = encode_images(tiny_model, index, num_workers=0, batch_size=4,
                         max_unreadable_fraction=0.5)
    assert check.found == len(data) == 7 and len(index) == 10
    assert data.attrs["unreadable_files"] == ["dog/gone.png", "dog/self.png", "dog/up"]
    assert "3 of the 10 images cannot be read" in check.warnings[0]


def test_a_file_name_that_is_not_utf8_is_refused_naming_it(tmp_path):
    from clustermine.deploy.inputs import gather_paths

    root = make_image_folder(tmp_path / "imgs", {"cat": 2}, seed=0)
    os.rename(root / "cat" / "001.png", os.fsencode(root / "cat") + b"/caf\xe9.png")
    with pytest.raises(DatasetError, match=r"cat/caf\\xe9\.png: the file name is not valid UTF-8"):
        index_imagefolder(root)
    with pytest.raises(ValueError, match=r"caf\\xe9\.png: the file name is not valid UTF-8"):
        gather_paths([root])


def test_a_missing_file_says_when_its_path_is_a_broken_link(tmp_path):
    """One message for every reader: a path that shows in a listing but cannot be opened is a
    dangling link or a loop, and "does not exist" alone would not say so."""
    from clustermine.missing_files import missing_file

    (tmp_path / "dangling.h5").symlink_to(tmp_path / "deleted.h5")
    (tmp_path / "loop.h5").symlink_to("loop.h5")
    assert missing_file(tmp_path / "absent.h5", "embedding file") == (
        f"{tmp_path / 'absent.h5'}: embedding file does not exist")
    assert missing_file(tmp_path / "dangling.h5", "embedding file") == (
        f"{tmp_path / 'dangling.h5'}: embedding file is a dangling symbolic link (to "
        f"{tmp_path / 'deleted.h5'}, which does not exist); point the link at the embedding "
        "file, or replace it")
    assert missing_file(tmp_path / "loop.h5", "score file").endswith(
        "score file is a symbolic link loop; point the link at the score file")
    (tmp_path / "folder").mkdir()
    (tmp_path / "to-folder.h5").symlink_to(tmp_path / "folder")
    assert missing_file(tmp_path / "to-folder.h5", "detector file").endswith(
        f"detector file is a symbolic link to {tmp_path / 'folder'}, which is not a file")
    # The readers use it.
    from clustermine.h5io import read_image_embeddings
    from clustermine.score_files import read_scores

    with pytest.raises(FileNotFoundError, match="dangling symbolic link"):
        read_image_embeddings(tmp_path / "dangling.h5")
    with pytest.raises(FileNotFoundError, match="symbolic link loop"):
        read_scores(tmp_path / "loop.h5", "x")


def test_a_bundle_link_to_a_folder_without_a_manifest_is_not_called_dangling(tmp_path):
    from clustermine.deploy.bundle import BundleError, read_manifest

    (tmp_path / "empty").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "empty", target_is_directory=True)
    with pytest.raises(BundleError, match="linked: not a detector bundle"):
        read_manifest(tmp_path / "linked")
    (tmp_path / "gone").symlink_to(tmp_path / "deleted", target_is_directory=True)
    with pytest.raises(BundleError, match="gone: bundle is a dangling symbolic link"):
        read_manifest(tmp_path / "gone")
