"""The pre-flight data check: missing folders, short file lists, class maps, tar shards and
word lists are named; counts are set against the public releases'; it reads listings only
(never an image) and stops a workflow run before any job reads a dataset."""

from __future__ import annotations

import os
import re
import tarfile
import time

import pytest
from helpers import REPO, make_image_folder, planned_jobs, read_config, snakemake, write_config

from clustermine.cli import main
from clustermine.datacheck import DataCheckFailed, check_dataset
from clustermine.preflight import check_data
from clustermine.datasets import build_index
from clustermine.public_sets import PUBLIC_SETS


def test_image_folder_counts_and_the_public_count(tmp_path):
    root = make_image_folder(tmp_path / "val", {"n01": 3, "n02": 2}, seed=0)
    (root / "n02" / "notes.txt").write_text("not an image")
    check = check_dataset("imagenet-val", {"type": "imagefolder", "root": str(root),
                                           "public": "imagenet-val", "limit": 4})
    assert (check.found, check.used, check.expected) == (5, 4, 50_000)
    assert check.status == "warning" and not check.errors
    assert "found 5 images, the public release 'imagenet-val' has 50,000" in check.warnings[0]
    (tmp_path / "map.txt").write_text("n01 tench\n")
    mapped = check_dataset("x", {"type": "imagefolder", "root": str(root),
                                 "class_map": str(tmp_path / "map.txt")})
    assert mapped.errors == [f"class map {tmp_path / 'map.txt'} lacks 1 of the 2 class "
                             "folders, e.g. n02"]
    gone = check_dataset("x", {"type": "imagefolder", "root": str(tmp_path / "nowhere")})
    assert gone.errors == [f"root folder {tmp_path / 'nowhere'} does not exist"]


def test_file_list_missing_files_are_named(tmp_path):
    root = make_image_folder(tmp_path / "imgs", {"a": 10}, seed=1)
    listed = [f"a/{i:03d}.png" for i in range(10)] + ["a/lost1.png", "b/lost2.png"]
    (tmp_path / "list.txt").write_text("".join(f"{p} 0\n" for p in listed))
    spec = {"type": "filelist", "root": str(root), "list": str(tmp_path / "list.txt")}
    strict = check_dataset("ood", spec, max_missing=0.1)
    assert strict.found == 10 and strict.status == "ERROR"
    assert "2 of the 12 listed files are missing" in strict.errors[0]
    assert "a/lost1.png, b/lost2.png" in strict.errors[0]
    lenient = check_dataset("ood", spec, max_missing=0.2)
    assert lenient.status == "warning" and "left out as unreadable" in lenient.warnings[0]
    missing_list = check_dataset("ood", {**spec, "list": str(tmp_path / "none.txt")})
    assert missing_list.errors == [f"file list {tmp_path / 'none.txt'} does not exist"]


def test_tar_shards_and_word_lists(tmp_path):
    (tmp_path / "tars").mkdir()
    for t in range(2):
        with tarfile.open(tmp_path / "tars" / f"s-{t}.tar", "w") as tar:
            for i in range(3):
                for ext in ("jpg", "cls"):
                    (tmp_path / f"k{i}.{ext}").write_bytes(b"x")
                    tar.add(tmp_path / f"k{i}.{ext}", arcname=f"t{t}k{i}.{ext}")
    spec = {"type": "webdataset", "root": str(tmp_path / "tars"), "tars": "s-{0..1}.tar"}
    assert check_dataset("shards", spec).found == 6
    absent = check_dataset("shards", {**spec, "tars": "s-{0..3}.tar"})
    assert absent.errors == ["2 of 4 tar shards are missing: s-2.tar, s-3.tar"]
    (tmp_path / "words.txt").write_text("dog\n\ncat\n")
    result = check_data({}, {"words": {"type": "wordlist", "path": str(tmp_path / "words.txt")},
                             "gone": {"type": "wordlist", "path": str(tmp_path / "no.txt")}})
    assert [c.found for c in result.checks] == [2, None] and not result.ok
    with pytest.raises(DataCheckFailed, match="gone: word list .*no.txt does not exist"):
        result.raise_for_errors()


def test_listing_only_seconds_for_many_files(tmp_path):
    """The check lists folders: files that are not images at all (empty) pass and are
    counted, and 20,000 of them take well under a second."""
    root = tmp_path / "big"
    for c in range(20):
        (root / f"c{c:02d}").mkdir(parents=True)
        for i in range(1000):
            (root / f"c{c:02d}" / f"{i}.JPEG").touch()
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"c{c:02d}/{i}.JPEG\n" for c in range(20) for i in range(1000)))
    start = time.perf_counter()
    folder = check_dataset("big", {"type": "imagefolder", "root": str(root)})
    listed = check_dataset("big-list", {"type": "filelist", "root": str(root),
                                        "list": str(listing)})
    seconds = time.perf_counter() - start
    assert folder.found == listed.found == 20_000 and folder.status == listed.status == "ok"
    assert seconds < 5, seconds


def test_check_data_command_names_a_missing_folder_and_a_short_list(tiny_project, capsys):
    config = read_config(tiny_project)
    data = tiny_project / "data"
    (data / "ood.txt").write_text("tree/000.png\ntree/001.png\ntree/gone.png\n")
    config["datasets"]["ood"] = {"type": "filelist", "root": str(data / "ood"),
                                 "list": str(data / "ood.txt"), "public": "ninco"}
    config["datasets"]["id-test"]["root"] = str(data / "moved-away")
    cfg = str(write_config(tiny_project, config))
    assert main(["check-data", "--configfile", cfg]) == 1
    out = capsys.readouterr()
    table = {line.split("|")[1].strip(): line for line in out.out.splitlines()[2:]}
    assert set(table) == {"id-train", "id-test", "ood", "words"}
    assert re.search(r"\| imagefolder \| .* \| 36 \| 36 \|  \| ok \|", table["id-train"])
    assert "ERROR" in table["id-test"] and "ERROR" in table["ood"]
    assert f"id-test: root folder {data / 'moved-away'} does not exist" in out.err
    assert "ood: 1 of the 3 listed files are missing" in out.err and "tree/gone.png" in out.err
    assert "| 5,879 |" in table["ood"]  # the public count is listed beside what was found
    # --config overrides as for snakemake
    assert main(["check-data", "--configfile", cfg, "--config", "encode={max_unreadable_"
                 "fraction: 0.5}"]) == 1
    assert "ood: 1 of the 3" not in capsys.readouterr().err


def test_the_workflow_checks_data_before_any_job_reads_it(tiny_project):
    config = read_config(tiny_project)
    config["datasets"]["ood"]["root"] = str(tiny_project / "data" / "not-there")
    write_config(tiny_project, config)
    out = snakemake(tiny_project, "--cores", "2")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Error in rule check_data" in text
    assert f"ood: root folder {tiny_project / 'data' / 'not-there'} does not exist" in text
    # By construction (its index needs its check) the bad dataset is never read; whether other
    # datasets' cheap local jobs ran first depends on the scheduler, so it is not asserted.
    assert not (tiny_project / "resources" / "index" / "ood.tsv").exists()
    assert not list((tiny_project / "results").rglob("ood*.h5"))
    assert not (tiny_project / "resources" / "preflight.tsv").exists()


def test_a_bad_precomputed_embedding_file_stops_the_run_before_any_gpu_job(tiny_project):
    """A benchmark given as a precomputed file with a non-finite row was refused only when
    scored, after every embedding, clustering and detector; now its check, which every job
    reading the file needs and which runs first (top priority), stops the run."""
    import h5py
    import numpy as np

    from clustermine.h5io import ImageEmbeddings, write_image_embeddings

    pre = tiny_project / "data" / "ood-pre.h5"
    write_image_embeddings(pre, ImageEmbeddings(
        np.ones((4, 8), np.float32), np.zeros(4, np.int64), [f"{i}.png" for i in range(4)],
        attrs={"model_arch": "clustermine-tiny", "model_pretrained": "none"}))
    with h5py.File(pre, "a") as f:
        f["embeddings"][2, 0] = np.inf
    config = read_config(tiny_project)
    config["datasets"]["ood-pre"] = {"type": "embeddings", "paths": {"tiny-a": str(pre)}}
    config["idsets"]["tiny"]["extra_benchmarks"] = ["ood-pre"]
    write_config(tiny_project, config)
    out = snakemake(tiny_project, "--cores", "2")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Error in rule check_data" in text
    assert "ood-pre" in text and "not finite" in text and str(pre) in text
    assert not list(tiny_project.rglob("results/**/scores/*.h5"))
    assert not list(tiny_project.rglob("results/**/images/*.h5"))  # no encoding finished


def test_the_workflow_warns_about_a_benchmark_made_of_id_test_images(tiny_project):
    """The check across datasets runs in the workflow too, not only in `clustermine
    check-data`: a warning in the pre-flight log and table, and the run goes on."""
    config = read_config(tiny_project)
    config["datasets"]["leak"] = {"type": "imagefolder",
                                  "root": str(tiny_project / "data" / "id-test")}
    config["idsets"]["tiny"]["extra_benchmarks"] = ["leak"]
    write_config(tiny_project, config)
    snakemake(tiny_project, "--cores", "1", "resources/preflight.tsv", check=True)
    log = (tiny_project / "logs" / "preflight.log").read_text()
    assert "leak: shares 16 of its 16 files with the ID sets of tiny: 16 with its test set " \
           "id-test" in log
    rows = [line.split("\t") for line in
            (tiny_project / "resources" / "preflight.tsv").read_text().splitlines()]
    assert rows[0][:2] == ["dataset", "type"]
    assert sorted(r[0] for r in rows[1:] if r[1] != "shared files") == [
        "id-test", "id-train", "leak", "ood", "words"]
    assert [r[6] for r in rows[1:] if r[1] == "shared files"] == ["warning"]


def test_a_check_reruns_with_its_index_and_only_with_it(tiny_project):
    target = "resources/index/ood.tsv"
    snakemake(tiny_project, "--cores", "1", target, check=True)
    table = (tiny_project / "resources/checked/ood.tsv").read_text()
    assert table.splitlines()[1].split("\t")[:4] == ["ood", "imagefolder",
                                                      str(tiny_project / "data/ood"), "12"]
    config = read_config(tiny_project)
    config["datasets"]["ood"]["public"] = "imagenet-o"  # changes no result: reruns nothing
    config["encode"]["max_unreadable_fraction"] = 0.5
    write_config(tiny_project, config)
    assert planned_jobs(tiny_project, target) == {}
    config["datasets"]["ood"]["limit"] = 5  # changes the index: the check runs first
    write_config(tiny_project, config)
    assert planned_jobs(tiny_project, target) == {"check_data": 1, "index_dataset": 1}


def test_public_counts_are_documented_with_their_source():
    docs = (REPO / "docs" / "results.md").read_text().split("#### Expected image counts")[1]
    for name, ref in PUBLIC_SETS.items():
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{name}` ")), None)
        assert row is not None, f"docs/results.md has no row for public set {name}"
        assert f"{ref.images:,}" in row, (name, ref.images)


# --- the check and the index list the same files ------------------------------------------------


def symlinked_folder(tmp_path):
    """Two classes of 3 images; ``dog`` also holds a link to a folder of 4 more images, a
    dangling link, and ``cat`` a link to itself and a link loop."""
    root = make_image_folder(tmp_path / "imgs", {"cat": 3, "dog": 3}, seed=0)
    more = make_image_folder(tmp_path / "elsewhere", {"more": 4}, seed=1) / "more"
    (root / "dog" / "more").symlink_to(more, target_is_directory=True)
    (root / "dog" / "gone.png").symlink_to(tmp_path / "deleted.png")
    (root / "cat" / "again").symlink_to(root / "cat", target_is_directory=True)
    (root / "cat" / "self.png").symlink_to("self.png")
    return root


def test_symlinked_folders_are_followed_and_broken_links_counted_as_unreadable(tmp_path):
    root = symlinked_folder(tmp_path)
    spec = {"type": "imagefolder", "root": str(root)}
    index = build_index(spec)
    broken = ["cat/again", "cat/self.png", "dog/gone.png"]
    assert [p for p in index.paths if p.startswith("dog/more/")] == [
        f"dog/more/{i:03d}.png" for i in range(4)]  # fmt: skip
    assert len(index) == 13 and set(broken) <= set(index.paths)
    strict = check_dataset("links", spec)
    assert strict.found == 10 and strict.status == "ERROR"
    assert "3 of the 13 images cannot be read" in strict.errors[0]
    assert all(b in strict.errors[0] for b in broken)
    lenient = check_dataset("links", spec, max_missing=0.5)
    assert (lenient.found, lenient.used, lenient.status) == (10, 10, "warning")
    assert "dangling" in lenient.warnings[0] and "loop" in lenient.warnings[0]
    assert "left out as unreadable" in lenient.warnings[0]


def test_a_file_name_that_is_not_utf8_is_named_by_the_check_and_the_index(tmp_path):
    root = make_image_folder(tmp_path / "imgs", {"cat": 2}, seed=0)
    os.rename(root / "cat" / "000.png", os.fsencode(root / "cat") + b"/caf\xe9.png")
    spec = {"type": "imagefolder", "root": str(root)}
    message = r"cat/caf\\xe9\.png.*not valid UTF-8.*[Rr]ename"
    with pytest.raises(ValueError, match=message):
        build_index(spec)
    check = check_dataset("latin1", spec)
    assert check.status == "ERROR" and re.search(message, check.errors[0])


def test_the_check_reads_file_lists_as_the_index_does(tmp_path):
    root = make_image_folder(tmp_path / "imgs", {"a": 3}, seed=1)
    (tmp_path / "list.txt").write_text("\ufeffa/000.png 0\na/001.png\na/002.png 1\n",
                                       encoding="utf-8")
    check = check_dataset("ood", {"type": "filelist", "root": str(root),
                                  "list": str(tmp_path / "list.txt")})
    assert check.status == "ERROR" and "list.txt:2: a/001.png has no label" in check.errors[0]


def test_a_benchmark_sharing_files_with_its_id_sets_is_warned(tmp_path):
    """A benchmark made of the ID test images scores AUROC 50: a warning, not an error."""
    for name, n in (("train", 4), ("test", 3), ("ood", 3)):
        make_image_folder(tmp_path / name, {"c": n}, seed=len(name))
    (tmp_path / "copy").symlink_to(tmp_path / "test", target_is_directory=True)
    (tmp_path / "ood.txt").write_text("test/c/000.png\ntest/c/001.png\nood/c/000.png\n"
                                      "train/c/003.png\n")
    datasets = {
        "id-train": {"type": "imagefolder", "root": str(tmp_path / "train"), "limit": 2},
        "id-test": {"type": "imagefolder", "root": str(tmp_path / "test")},
        "mixed": {"type": "filelist", "root": str(tmp_path), "list": str(tmp_path / "ood.txt")},
        "same": {"type": "imagefolder", "root": str(tmp_path / "copy")},
        "clean": {"type": "imagefolder", "root": str(tmp_path / "ood")},
    }
    idsets = {"tiny": {"train": "id-train", "test": ["id-test"],
                       "benchmarks": ["mixed", "clean"], "extra_benchmarks": ["same"]}}
    result = check_data(datasets, idsets=idsets)
    checks = {c.name: c for c in result.checks}
    assert result.ok and [checks[n].status for n in ("id-train", "id-test", "clean")] == ["ok"] * 3
    (mixed,) = checks["mixed"].warnings
    assert mixed.startswith("shares 3 of its 4 files with the ID sets of tiny: 2 with its test "
                            "set id-test, 1 with its train set id-train (e.g. test/c/000.png, "
                            "test/c/001.png, train/c/003.png)")
    (same,) = checks["same"].warnings  # the very test images, through a symbolic link
    assert same.startswith("shares 3 of its 3 files with the ID sets of tiny: 3 with its test "
                           "set id-test")
    assert "shares 3 of its 4 files" in result.markdown() and "| warning |" in result.markdown()
    # without the ID sets (one dataset checked on its own) there is nothing to compare
    assert check_data(datasets).checks[2].status == "ok"


def test_precomputed_embedding_files_are_read_before_any_gpu_job(tmp_path):
    """A bad `type: embeddings` file (non-finite rows, another model) is refused by the data
    check, which the pre-flight marker of every GPU job needs, not at scoring."""
    import h5py
    import numpy as np

    from clustermine.datacheck import check_dataset
    from clustermine.h5io import ImageEmbeddings, write_image_embeddings

    path = tmp_path / "pre.h5"
    write_image_embeddings(path, ImageEmbeddings(
        np.ones((4, 3), np.float32), np.zeros(4, np.int64), [f"{i}.png" for i in range(4)],
        attrs={"model_arch": "clustermine-tiny", "model_pretrained": "random-weights"}))
    spec = {"type": "embeddings", "paths": {"m": str(path)},
            "models": {"m": {"arch": "clustermine-tiny"}}}
    assert check_dataset("pre", spec).errors == []
    other = {**spec, "models": {"m": {"arch": "ViT-B-32"}}}
    assert "names it for model 'm' ('ViT-B-32')" in check_dataset("pre", other).errors[0]
    with h5py.File(path, "a") as f:
        f["embeddings"][1, 1] = np.nan
    assert "not finite" in check_dataset("pre", spec).errors[0]


def test_the_preflight_table_refuses_a_file_that_is_not_a_check_table(tmp_path):
    """The pre-flight job joins the per-dataset tables; a damaged one is named, not merged."""
    from clustermine.datacheck import DataCheck
    from clustermine.preflight import merged_tables

    good = tmp_path / "good.tsv"
    DataCheck([check_dataset("x", {"type": "imagefolder", "root": str(tmp_path / "none")})]
              ).write_tsv(good)
    merged = merged_tables([good], DataCheck([]))
    assert merged.splitlines()[0].split("\t") == DataCheck.HEADER
    assert merged.splitlines()[1].startswith("x\timagefolder\t")
    for name, content in [("empty.tsv", b""), ("other.tsv", b"a\tb\n1\t2\n"),
                          ("latin.tsv", "\t".join(DataCheck.HEADER).encode() + b"\ncaf\xe9\n")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataCheckFailed, match=rf"{name}: not a data-check table"):
            merged_tables([good, tmp_path / name], DataCheck([]))
