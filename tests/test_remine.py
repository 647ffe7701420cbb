"""Re-mining a detector's positives from deployment images (clustermine.remine,
``clustermine remine``): the vote re-derived independently, the contamination guard and the
minimum support, the concept diff and ``--apply``, and the detectors it refuses."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_WORDS
from helpers.service import make_detector

import clustermine
from clustermine.clustering.kmeans import fit_kmeans
from clustermine.deploy.inputs import gather_paths
from clustermine.detectors import get_detector
from clustermine.h5io import TextEmbeddings
from clustermine.remine import (
    Concept,
    RemineError,
    RemineSettings,
    concept_diff,
    corpus_of,
    remine,
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """An Eq. 1 detector of the tiny model (positives: 2 words, negatives: the rest of the
    word list), and its 16 deployment images with their embeddings."""
    root = tmp_path_factory.mktemp("remine")
    bundle = make_detector(root)
    det = clustermine.load_detector(bundle, device="cpu")
    paths = gather_paths([root / "id", root / "ood"])
    emb, errors = det.embed(paths)
    assert not any(errors)
    return root, bundle, det, paths, emb


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_new_positives_are_the_clusters_votes(deployment):
    _, _, det, paths, emb = deployment
    settings = RemineSettings(clusters=3, holdout=0.25, guard_p=None, min_support=1, seed=0)
    out = remine(det.detector, emb, paths, settings)
    # Independently: the same held-out rows, zero-shot top-1 by cosine, a majority per cluster
    # (ties: the lower corpus index).
    names = [*det.detector.text_pos.names, *det.detector.text_neg.names]
    corpus = np.concatenate([det.detector.text_pos.embeddings, det.detector.text_neg.embeddings])
    held = np.random.default_rng(0).permutation(len(paths))[: round(0.25 * len(paths))]
    mine = np.setdiff1d(np.arange(len(paths)), held)
    top1 = (unit(emb[mine]) @ unit(corpus).T).argmax(1)
    assign = fit_kmeans(emb[mine], 3, {"seed": 0}).assignments
    images = collections.Counter()
    for k in set(assign.tolist()):
        counts = collections.Counter(top1[assign == k].tolist())
        best = min(counts, key=lambda i: (-counts[i], i))
        images[names[best]] += counts[best]
    assert sorted(out.detector.text_pos.names) == sorted(images)
    assert sorted(out.detector.text_neg.names) == sorted(set(names) - set(images))
    diff = {c.name: c for c in out.diff}
    for name in TINY_WORDS[:2]:  # the old positives: kept or removed
        assert diff[name].change == ("kept" if name in images else "removed")
    for name, count in images.items():
        assert diff[name].images == count
        assert diff[name].change in ("kept", "added")
        assert 1 <= len(diff[name].examples) <= 3
    assert out.detector.name == det.detector.name and out.detector.params == det.detector.params
    assert len(out.detector.calibration) == len(held)
    assert out.record["mined"] == len(mine) and out.record["left_out_by_guard"] == 0
    assert out.detector.meta["remined"]["settings"]["seed"] == 0
    # Re-mined again with the same seed: the same detector.
    again = remine(det.detector, emb, paths, settings)
    assert again.detector.text_pos.names == out.detector.text_pos.names


def test_the_guard_and_the_minimum_support(deployment):
    _, _, det, paths, emb = deployment
    p = det.predict(embeddings=emb).p_values
    guard = float(np.quantile(p, 0.3))
    out = remine(det.detector, emb, paths, RemineSettings(clusters=2, guard_p=guard,
                                                          min_support=1))
    left_out = {paths[i] for i in np.flatnonzero(p <= guard)}
    assert out.record["left_out_by_guard"] == len(left_out) > 0
    assert out.record["mined"] + out.record["held_out"] == len(paths) - len(left_out)
    assert not left_out & {e for c in out.diff for e in c.examples}
    # A new name needs min_support voting images; old positives stay on any vote.
    votes = {"a": Concept("a", "", 3, 1), "new": Concept("new", "", 4, 1),
             "big": Concept("big", "", 5, 2)}  # fmt: skip
    diff = {c.name: c.change for c in concept_diff(["a", "b"], votes, min_support=5)}
    assert diff == {"a": "kept", "b": "removed", "new": "below_support", "big": "added"}
    with pytest.raises(RemineError, match="images left to mine"):
        remine(det.detector, emb[:2], paths[:2], RemineSettings(guard_p=None))
    with pytest.raises(RemineError, match="no positives left"):
        remine(det.detector, emb, paths, RemineSettings(guard_p=None), positives=[])


def test_detectors_that_cannot_be_remined_are_refused():
    rng = np.random.default_rng(0)
    pos = TextEmbeddings(rng.normal(size=(2, 8)).astype(np.float32), ["a", "b"])
    none = TextEmbeddings(np.zeros((0, 8), np.float32), [])
    mcm = get_detector("mcm").fit(None, pos, none, 100.0)
    with pytest.raises(RemineError, match="no corpus to mine from"):
        corpus_of(mcm)
    maha = get_detector("mahalanobis").fit(rng.normal(size=(20, 8)), pos, pos, 100.0,
                                           train_labels=np.arange(20) % 2)  # fmt: skip
    with pytest.raises(RemineError, match="also needs train_embeddings"):
        corpus_of(maha)
    with pytest.raises(RemineError, match="holdout"):
        RemineSettings(holdout=1.0)


def test_the_command_writes_a_detector_and_a_diff_that_can_be_applied(deployment, tmp_path):
    root, bundle, _, _, _ = deployment

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "clustermine.cli", "remine", str(bundle), str(root / "id"),
             str(root / "ood"), "--clusters", "3", "--no-guard", "--min-support", "1",
             "--no-progress", *map(str, args)],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip

    new = tmp_path / "new.h5"
    done = run("-o", new)
    assert done.returncode == 0, done.stderr
    assert "re-mined 2 ->" in done.stderr and "new.diff.tsv" in done.stderr
    lines = (tmp_path / "new.diff.tsv").read_text().splitlines()
    assert lines[0] == "name\tchange\timages\tclusters\texamples"
    rows = [line.split("\t") for line in lines[1:]]
    det = clustermine.load_detector(new, device="cpu")  # scores new images as any detector
    assert sorted(det.detector.text_pos.names) == sorted(
        r[0] for r in rows if r[1] in ("added", "kept"))  # fmt: skip
    assert det.predict(gather_paths([root / "ood"])).num_errors == 0
    # A reviewed diff: only the first voted name is kept.
    first = next(r for r in rows if r[1] in ("added", "kept"))
    edited = tmp_path / "edited.tsv"
    edited.write_text("\n".join([lines[0], "\t".join(first)]) + "\n")
    applied = tmp_path / "applied.h5"
    done = run("-o", applied, "--apply", edited, "--diff", tmp_path / "applied.diff.tsv")
    assert done.returncode == 0, done.stderr
    assert clustermine.load_detector(applied).detector.text_pos.names == [first[0]]
    edited.write_text(lines[0] + "\nno such word\tadded\t1\t1\t\n")
    done = run("-o", tmp_path / "x.h5", "--apply", edited)
    assert done.returncode != 0 and "not names of the detector's corpus" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x.h5").exists()
    done = subprocess.run(
        [sys.executable, "-m", "clustermine.cli", "remine", str(root / "detector.h5"),
         str(root / "id"), "-o", str(root / "detector.h5")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode != 0 and "names the detector itself" in done.stderr


def test_the_deployments_table_reads_the_summary_and_the_diff(tmp_path):
    from clustermine.remine_report import deployment_record
    from clustermine.tables import build_tables

    (tmp_path / "s.tsv").write_text(
        "test\tbenchmark\tauroc_old\tauroc_new\tfpr95_old\tfpr95_new\n"
        "id\tdigits\t99.5\t57.25\t1.0\t92.0\nid\ttextures\t99.0\t99.25\t2.0\t1.5\n"
    )
    (tmp_path / "d.tsv").write_text(
        "name\tchange\timages\tclusters\texamples\ncoat\tkept\t9\t1\ta.png\n"
        "digit\tadded\t7\t1\tb.png\nsix\tadded\t5\t1\t\nbag\tremoved\t0\t0\t\n"
        "nine\tbelow_support\t2\t1\t\n"
    )
    record = deployment_record("m", "arrive", tmp_path / "s.tsv", tmp_path / "d.tsv")
    table = build_tables([], {}, (), [record])["deployments"]
    assert table.note is None
    frame = table.frame
    assert frame["benchmark"].tolist() == ["digits", "textures"]
    assert frame["AUROC new"].tolist() == [0.5725, 0.9925]  # fractions, shown in percent
    assert frame["added"].iloc[0] == "2: digit, six" and frame["removed"].iloc[0] == "1: bag"
    assert frame["kept"].iloc[0] == 1
    from clustermine.table_render import table_markdown

    assert "57.25" in table_markdown(table)
    empty = build_tables([], {}, (), [])["deployments"]
    assert "no deployment in this configuration" in empty.note
    # The figure: one panel per deployment, the old and the new AUROC as bars.
    from PIL import Image

    from clustermine.plots import PLOTS, PlotInputs

    PLOTS["deployments"](PlotInputs.build([], {}, deployments=[record, record]), tmp_path / "d.png")
    PLOTS["deployments"](PlotInputs.build([], {}), tmp_path / "none.png")
    full, none = Image.open(tmp_path / "d.png"), Image.open(tmp_path / "none.png")
    assert full.size[1] > 1.5 * none.size[1]  # two panels against a one-line message


def test_bad_embeddings_and_malformed_diffs_are_named(deployment, tmp_path):
    """A NaN or infinite embedding row (a damaged model) is refused naming its image, never
    clustered into a concept; a diff that is not one, or not UTF-8, is named."""
    from clustermine.remine import read_diff_positives

    _, _, det, paths, emb = deployment
    bad = emb.copy()
    bad[3, 0], bad[5, 1] = np.nan, np.inf
    with pytest.raises(RemineError, match=r"2 of 16 .*NaN or infinite.*" + paths[3].replace(
            "\\", "\\\\").split("/")[-1]):  # fmt: skip
        remine(det.detector, bad, paths, RemineSettings(guard_p=None))
    (tmp_path / "x.tsv").write_text("word\tkind\ncoat\tkept\n")
    with pytest.raises(RemineError, match=r"x.tsv: not a concept diff"):
        read_diff_positives(tmp_path / "x.tsv")
    (tmp_path / "l.tsv").write_bytes(b"name\tchange\nbl\xe9\tkept\n")
    with pytest.raises(RemineError, match=r"l.tsv:2: not UTF-8"):
        read_diff_positives(tmp_path / "l.tsv")
    (tmp_path / "e.tsv").write_text("name\tchange\n\tkept\n")
    with pytest.raises(RemineError, match=r"e.tsv:2: a row needs a name"):
        read_diff_positives(tmp_path / "e.tsv")
