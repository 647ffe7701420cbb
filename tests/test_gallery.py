"""The report's gallery (clustermine.gallery): real image folders, embedding, cluster, label-set,
detector and score files written by the library's own writers, a planted structure whose votes,
purities, merges, drops and mistakes the page must show, and the bad inputs a gallery meets
(unreadable and odd-named images, tar shards, datasets given as embeddings)."""

from __future__ import annotations

import base64
import html
import io
import re
import tarfile

import numpy as np
import pytest
from PIL import Image

from clustermine.clustering import ClusterResult
from clustermine.clustering.io import write_clusters
from clustermine.datasets.index import DatasetIndex
from clustermine.datasets.index_file import write_index
from clustermine.detectors.registry import get_detector
from clustermine.gallery import GallerySources, build_gallery, settings
from clustermine.gallery_html import render, write_gallery
from clustermine.h5io import (
    ImageEmbeddings,
    TextEmbeddings,
    write_image_embeddings,
    write_text_embeddings,
)
from clustermine.labelsets import LabelSet, write_label_set
from clustermine.score_files import ScoreSet, write_score_file
from clustermine.thumbnails import ImageRoot, ThumbnailStore, data_uri, shrink
from clustermine.zeroshot import ZeroShotResult, write_zero_shot

MODEL = {"arch": "RN50", "pretrained": "none", "logit_scale": 100.0}
CORPUS = ["cat", "dog", "tree", "car", "boat", "house"]
CLASSES = ["cat", "dog", "tree"]
D = 6


def _image(path, value: int, size=(20, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def _images(path, paths, labels, emb, classes=CLASSES):
    write_image_embeddings(path, ImageEmbeddings(
        np.asarray(emb, np.float32), np.asarray(labels, np.int64), list(paths),
        list(classes) if classes else None, dict(MODEL)))  # fmt: skip


def _onehot(rows):
    out = np.full((len(rows), D), 0.01, np.float32)
    out[np.arange(len(rows)), rows] = 1.0
    return out


@pytest.fixture
def planted(tmp_path):
    """12 ID-train images in 4 clusters: clusters 0 and 1 both vote "cat" (merged), cluster 2
    votes "tree" with one "dog" image among its three (purity 2/3), cluster 3 votes "car",
    which the label set leaves out (dropped). One train image is not an image file."""
    root = tmp_path / "data"
    train_paths = [f"train/c{i % 4}/img {i} é.png" for i in range(12)]
    assign = np.array([i % 4 for i in range(12)])
    names = {0: 0, 1: 0, 2: 2, 3: 3}  # cluster -> voted corpus row
    top1 = np.array([names[c] for c in assign])
    labels = np.array([{0: 0, 1: 0, 2: 2, 3: 1}[c] for c in assign])
    labels[2] = 1  # a dog in the tree cluster: purity 2/3
    for i, p in enumerate(train_paths):
        if i == 7:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            (root / p).write_bytes(b"not an image")
        else:
            _image(root / p, 20 * i)
    _images(tmp_path / "train.h5", train_paths, labels, _onehot(top1))
    # ID test: 4 images, the "tree"-like one scores lowest; OOD: 4, the boat-like one highest.
    test_paths, bench_paths = [f"test/{i}.png" for i in range(4)], []
    for i, p in enumerate(test_paths):
        _image(root / p, 200 + i)
    _images(tmp_path / "test.h5", test_paths, [0, 1, 0, 1], _onehot([0, 1, 0, 2]))
    with tarfile.open(root / "ood.tar", "w") as tar:  # the benchmark as a tar shard
        for i in range(4):
            _image(tmp_path / "tmp" / f"{i}.png", 50 + i)
            tar.add(tmp_path / "tmp" / f"{i}.png", arcname=f"s{i}.png")
            bench_paths.append(f"ood.tar/s{i}.png")
    _images(tmp_path / "ood.h5", bench_paths, [-1] * 4, _onehot([4, 5, 4, 0]), None)
    for name, paths, typ in (("train", train_paths, "folder"), ("test", test_paths, "folder"),
                             ("ood", bench_paths, "webdataset")):  # fmt: skip
        write_index(tmp_path / f"{name}.tsv", DatasetIndex(
            str(root), paths, np.zeros(len(paths), np.int64), None, {"type": typ}))  # fmt: skip
    write_text_embeddings(tmp_path / "text.h5", TextEmbeddings(
        np.eye(D, dtype=np.float32), list(CORPUS), attrs=dict(MODEL)))  # fmt: skip
    write_text_embeddings(tmp_path / "classes.h5", TextEmbeddings(
        np.eye(D, dtype=np.float32)[:3], list(CLASSES), attrs=dict(MODEL)))  # fmt: skip
    sims = np.ones((12, 1))
    sims[4] = 0.5  # cluster 0's image 4 is the least "cat"-like
    write_zero_shot(tmp_path / "zs.h5", ZeroShotResult(top1[:, None], sims), dict(MODEL))
    write_clusters(tmp_path / "clusters.h5", ClusterResult(assign, 5, "kmeans", np.zeros(1)))
    write_label_set(tmp_path / "cm.tsv", LabelSet(
        "clustermine", list(CORPUS), [0, 2], [4, 5], pos_votes=[2, 1]))  # fmt: skip
    pos = TextEmbeddings(np.eye(D, dtype=np.float32)[[0, 2]], ["cat", "tree"])
    neg = TextEmbeddings(np.eye(D, dtype=np.float32)[[4, 5]], ["boat", "house"])
    get_detector("eq1").fit(None, pos, neg, 100.0).save(tmp_path / "det.h5")
    get_detector("mcm").fit(None, pos, neg, 100.0).save(tmp_path / "mcm.h5")
    write_score_file(tmp_path / "scores.h5", {
        "test": ScoreSet(np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 1, 0, 1])),
        "ood": ScoreSet(np.array([0.2, 0.3, 0.95, 0.4]), np.full(4, -1)),
    }, {"score": "mcm"})  # fmt: skip
    return GallerySources(
        model="m", idset="ids", train="train", tests=["test"], benchmarks=["ood"],
        images={d: tmp_path / f"{d}.h5" for d in ("train", "test", "ood")},
        roots={d: ImageRoot.from_index(tmp_path / f"{d}.tsv") for d in ("train", "test", "ood")},
        text=tmp_path / "text.h5", zero_shot=tmp_path / "zs.h5", classes=tmp_path / "classes.h5",
        clusterings={"kmeans-C5": tmp_path / "clusters.h5"},
        label_sets={"cm": (tmp_path / "cm.tsv", "kmeans-C5"),
                    "cm-again": (tmp_path / "cm.tsv", "kmeans-C5")},
        methods={"mcm": (tmp_path / "det.h5", tmp_path / "scores.h5")},
    )  # fmt: skip


def _cards(gallery, kind):
    [section] = [s for s in gallery.sections if s.kind == kind][:1]
    return {c.title: c for c in section.cards}


def test_clusters_show_their_vote_purity_merges_and_drops(planted):
    gallery = build_gallery(planted)
    cards = _cards(gallery, "clusters")
    assert set(cards) == {"cluster 0: cat", "cluster 1: cat", "cluster 2: tree", "cluster 3: car"}
    assert "merged with cluster 1" in cards["cluster 0: cat"].marks
    assert "merged with cluster 0" in cards["cluster 1: cat"].marks
    assert cards["cluster 2: tree"].marks == []
    assert cards["cluster 3: car"].marks == ["dropped by cm", "dropped by cm-again"]
    assert "purity 67% (tree)" in cards["cluster 2: tree"].facts
    assert "vote share 100%" in cards["cluster 2: tree"].facts
    # The empty cluster 4 has no card; the summary counts it.
    [section] = [s for s in gallery.sections if s.kind == "clusters"]
    assert "4 clusters voted for 3 names; 1 empty" in section.summary
    # Every member of a three-image cluster is shown, captioned with its true class.
    tiles = cards["cluster 2: tree"].tiles
    assert sorted(t.path for t in tiles) == [f"train/c2/img {i} é.png" for i in (10, 2, 6)]
    assert "true: dog" in [t.caption[0] for t in tiles]


def test_unreadable_images_become_tiles_that_say_so(planted):
    gallery = build_gallery(planted)
    [bad] = [t for t in _cards(gallery, "clusters")["cluster 3: car"].tiles
             if t.path.endswith("img 7 é.png")]  # fmt: skip
    assert bad.css is None and bad.problem.startswith("unreadable")
    page = render(gallery)
    assert "unreadable" in page and html.escape("img 7 é.png") in page


def test_positives_show_their_voting_clusters_images_and_nearest_true_name(planted):
    gallery = build_gallery(planted)
    cards = _cards(gallery, "labels")
    assert set(cards) == {"cat", "tree"}
    cat = cards["cat"]
    assert "voted by cluster 0, 1" in cat.facts
    assert "nearest true name: cat (cos 1.00)" in cat.facts
    # Images named "cat" by zero-shot, most similar first: image 4 (sim 0.5) comes last.
    assert len(cat.tiles) == 6 and cat.tiles[-1].path == "train/c0/img 4 é.png"
    # A second label set with the same positives is one line, not a second copy.
    [again] = [s for s in gallery.sections if s.title == "Label set: cm-again"]
    assert again.cards == [] and "same 2 positives as cm" in again.summary


def test_errors_are_the_highest_scored_ood_and_lowest_scored_id_images(planted, tmp_path):
    # A second benchmark (the same images, other scores): its own accepted card; the ID
    # test set's rejected images are one card, not one per benchmark.
    write_score_file(tmp_path / "two.h5", {
        "test": ScoreSet(np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 1, 0, 1])),
        "ood": ScoreSet(np.array([0.2, 0.3, 0.95, 0.4]), np.full(4, -1)),
        "ood2": ScoreSet(np.array([0.5, 0.1, 0.2, 0.3]), np.full(4, -1)),
    }, {"score": "eq1"})  # fmt: skip
    planted.benchmarks = ["ood", "ood2"]
    planted.images["ood2"], planted.roots["ood2"] = planted.images["ood"], planted.roots["ood"]
    planted.methods = {"m": (planted.methods["mcm"][0], tmp_path / "two.h5")}
    cards = _cards(build_gallery(planted), "errors")
    assert list(cards) == ["OOD accepted: ood (against test)", "ID rejected: test",
                           "OOD accepted: ood2 (against test)"]  # fmt: skip
    ood, ids = cards["OOD accepted: ood (against test)"].tiles, cards["ID rejected: test"].tiles
    # OOD accepted in descending score order; ID rejected ascending.
    assert [t.path for t in ood] == [f"ood.tar/s{i}.png" for i in (2, 3, 1, 0)]
    assert [t.path for t in ids] == [f"test/{i}.png" for i in (3, 2, 1, 0)]
    ood2 = cards["OOD accepted: ood2 (against test)"].tiles
    assert [t.path for t in ood2] == [f"ood.tar/s{i}.png" for i in (0, 3, 2, 1)]
    assert ood[0].caption[0] == "score 0.95"
    # s2 is a "boat" image: its nearest negative is boat.
    assert ood[0].caption[2] == "neg: boat"
    assert ids[0].caption[1] == "true: dog"  # test/3's label
    assert ids[0].caption[2] == "pos: tree" and ids[0].caption[3] in ("neg: boat", "neg: house")
    assert all(t.css for t in ood + ids)  # tar members are read as images


def test_only_the_labels_a_score_uses_are_shown(planted):
    """MCM scores with the positives only: its captions name no negative, although its
    detector file holds the label set's negatives."""
    planted.methods = {"mcm": (planted.methods["mcm"][0].with_name("mcm.h5"),
                               planted.methods["mcm"][1])}  # fmt: skip
    cards = _cards(build_gallery(planted), "errors")
    tiles = [t for c in cards.values() for t in c.tiles]
    assert len(tiles) == 8
    assert all(t.caption[-1].startswith("pos: ") for t in tiles)
    assert not any(line.startswith("neg: ") for t in tiles for line in t.caption)
    assert cards["ID rejected: test"].tiles[0].caption[-1] == "pos: tree"  # test/3, a "tree"


def test_a_junk_detector_file_is_named(planted, tmp_path):
    from clustermine.detectors.base import DetectorFileError

    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n junk")
    planted.methods = {"mcm": (tmp_path / "junk.h5", planted.methods["mcm"][1])}
    with pytest.raises(DetectorFileError, match="junk.h5: not a readable detector file"):
        build_gallery(planted)


def test_stream_scored_methods_read_their_pairs(planted, tmp_path):
    from clustermine.streams import StreamScores

    stream = StreamScores(np.array([0.5, 0.6, 0.1, 0.9]), np.array([0.7, 0.2, 0.3, 0.0]),
                          np.arange(8), 3)  # fmt: skip
    write_score_file(tmp_path / "stream.h5", {
        "test": ScoreSet(None, np.array([0, 1, 0, 1])), "ood": ScoreSet(None, np.full(4, -1)),
    }, {"score": "mcm"}, {("test", "ood"): stream})  # fmt: skip
    planted.methods = {"streamed": (planted.methods["mcm"][0], tmp_path / "stream.h5")}
    cards = _cards(build_gallery(planted), "errors")
    assert list(cards) == ["OOD accepted: ood (against test)",
                           "ID rejected: test (stream with ood)"]  # fmt: skip
    ood, ids = cards.values()
    assert [t.path for t in ood.tiles[:2]] == ["ood.tar/s0.png", "ood.tar/s2.png"]
    assert [t.path for t in ids.tiles[:2]] == ["test/2.png", "test/0.png"]


def test_thumbnails_are_stored_once_and_small(planted, tmp_path):
    gallery = build_gallery(planted)
    page = render(gallery)
    used = set(re.findall(r'class="img (t\d+)"', page))
    defined = re.findall(r"\.(t\d+)\{background-image:url\(data:image/(?:jpeg|png);base64,", page)
    assert len(defined) == len(set(defined)) == gallery.thumbnails == len(used)
    # 11 readable train images + 4 test + 4 OOD, each stored once however often it is shown.
    assert gallery.thumbnails == 19
    assert gallery.settings == {**settings(), "seed": 0}
    write_gallery(tmp_path / "g" / "page.html", gallery)
    assert (tmp_path / "g" / "page.html").read_text(encoding="utf-8") == page


def test_datasets_given_as_embeddings_have_tiles_without_images(planted):
    planted.roots["ood"] = None
    cards = _cards(build_gallery(planted), "errors")
    ood = cards["OOD accepted: ood (against test)"].tiles
    assert all(t.css is None and "embeddings" in t.problem for t in ood)
    assert all(t.css for t in cards["ID rejected: test"].tiles)


def test_a_zero_shot_file_of_other_images_is_refused(planted, tmp_path):
    short = ZeroShotResult(np.zeros((3, 1), np.int64), np.ones((3, 1)))
    write_zero_shot(tmp_path / "short.h5", short, dict(MODEL))
    planted.zero_shot = tmp_path / "short.h5"
    with pytest.raises(ValueError, match="short.h5: 3 rows, but the ID-train file"):
        build_gallery(planted)


def test_small_images_are_kept_and_large_ones_fit_the_square():
    small = Image.new("L", (28, 28), 9)
    assert shrink(small, 72) is small
    assert shrink(Image.new("RGB", (400, 100)), 72).size == (72, 18)


def test_thumbnails_take_the_smaller_encoding_and_one_channel_for_grey():
    rng = np.random.default_rng(0)
    grey = Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).convert("RGB")
    uri = data_uri(grey)
    kind, data = uri.split(";base64,")
    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
        assert img.mode == "L" and img.size == (28, 28)
        if kind == "data:image/png":  # lossless: the very pixels
            assert np.array_equal(np.asarray(img), np.asarray(grey)[:, :, 0])
    photo = Image.fromarray(rng.integers(0, 255, (72, 60, 3), dtype=np.uint8))
    assert data_uri(photo).startswith("data:image/jpeg;base64,")  # PNG not tried above 64 px


def test_huge_images_are_not_decoded(tmp_path, monkeypatch):
    import clustermine.thumbnails as thumbnails

    _image(tmp_path / "big.png", 1, size=(300, 300))
    monkeypatch.setattr(thumbnails, "MAX_PIXELS", 1000)
    store = ThumbnailStore({"d": ImageRoot(tmp_path)})
    thumb = store.get("d", "big.png")
    assert thumb.css is None and "ImageTooLarge" in thumb.problem
    assert store.get("d", "missing.png").problem.startswith("unreadable")


def test_the_plan_is_read_at_the_jobs_input_paths(planted, tmp_path):
    """The workflow's plan names files by their workflow paths; a job whose inputs were staged
    elsewhere reads each at its staged path (the mapping from Snakemake's inputs)."""
    from clustermine.gallery import sources_from

    plan = {
        "model": "m", "idset": "ids", "train": "train", "tests": ["test"],
        "benchmarks": ["ood"], "seed": 3,
        "images": {d: f"results/{d}.h5" for d in ("train", "test", "ood")},
        "indexes": {"train": "idx/train.tsv", "test": "idx/test.tsv", "ood": None},
        "text": "results/text.h5", "zero_shot": None, "classes": "results/classes.h5",
        "clusterings": {"kmeans-C5": "results/c.h5"},
        "label_sets": {"cm": ["results/cm.tsv", "kmeans-C5"]},
        "methods": {"mcm": ["results/det.h5", "results/scores.h5"]},
    }  # fmt: skip
    staged = {
        **{f"results/{d}.h5": str(planted.images[d]) for d in ("train", "test", "ood")},
        "idx/train.tsv": str(tmp_path / "train.tsv"), "idx/test.tsv": str(tmp_path / "test.tsv"),
        "results/text.h5": str(planted.text), "results/classes.h5": str(planted.classes),
        "results/c.h5": str(planted.clusterings["kmeans-C5"]),
        "results/cm.tsv": str(planted.label_sets["cm"][0]),
        "results/det.h5": str(planted.methods["mcm"][0]),
        "results/scores.h5": str(planted.methods["mcm"][1]),
    }  # fmt: skip
    sources = sources_from(plan, staged)
    assert sources.images == {d: str(planted.images[d]) for d in ("train", "test", "ood")}
    assert sources.roots["ood"] is None and sources.roots["train"] == planted.roots["train"]
    assert sources.label_sets == {"cm": (str(planted.label_sets["cm"][0]), "kmeans-C5")}
    assert sources.zero_shot is None and sources.seed == 3
    gallery = build_gallery(sources)  # no zero-shot names: clusters without votes
    assert {c.title for s in gallery.sections if s.kind == "clusters" for c in s.cards} == {
        f"cluster {c}" for c in range(4)}  # fmt: skip


def test_scores_of_other_images_are_refused(planted, tmp_path):
    write_score_file(tmp_path / "short.h5", {
        "test": ScoreSet(np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0])),
        "ood": ScoreSet(np.array([0.2, 0.3, 0.95, 0.4]), np.full(4, -1)),
    }, {"score": "mcm"})  # fmt: skip
    planted.methods = {"mcm": (planted.methods["mcm"][0], tmp_path / "short.h5")}
    with pytest.raises(ValueError, match="short.h5: 3 scores of test, but its image file"):
        build_gallery(planted)


def test_a_label_set_of_another_corpus_is_refused(planted, tmp_path):
    """Its rows' indices would point at other names' images: an error, not a wrong page."""
    other = ["dog", "cat", "tree", "car", "boat", "house"]
    write_label_set(tmp_path / "other.tsv", LabelSet("clustermine", other, [0, 2], [4, 5]))
    planted.label_sets = {"other": (tmp_path / "other.tsv", "kmeans-C5")}
    with pytest.raises(ValueError, match=r"other.tsv: positive 'dog' \(corpus row 0\)"):
        build_gallery(planted)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_are_refused(planted, tmp_path, bad):
    """NaN sorts last: the image it belongs to would silently never be shown."""
    write_score_file(tmp_path / "nan.h5", {
        "test": ScoreSet(np.array([0.9, bad, 0.7, 0.1]), np.array([0, 1, 0, 1])),
        "ood": ScoreSet(np.array([0.2, 0.3, 0.95, 0.4]), np.full(4, -1)),
    }, {"score": "eq1"})  # fmt: skip
    planted.methods = {"m": (planted.methods["mcm"][0], tmp_path / "nan.h5")}
    with pytest.raises(ValueError, match="nan.h5: 1 scores of test are NaN or infinite"):
        build_gallery(planted)
