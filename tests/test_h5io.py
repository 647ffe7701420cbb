import errno
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers.broken_model import small_filesystem

from clustermine.atomic import atomic_path, is_disk_full, OutputDiskFull
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


def test_image_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = ImageEmbeddings(
        rng.normal(size=(5, 8)).astype(np.float32),
        np.array([0, 1, -1, 2, 0]),
        [f"cls/{i}.png" for i in range(5)],
        ["a", "b", "c"],
        {"model_arch": "x", "model_pretrained": "y", "logit_scale": 100.0,
         "unreadable_files": ["bad.png"], "nested": {"k": [1, 2]}},
    )
    path = tmp_path / "img.h5"
    write_image_embeddings(path, data)
    back = read_image_embeddings(path)
    np.testing.assert_array_equal(back.embeddings, data.embeddings)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.labels.dtype == np.int64 and back.embeddings.dtype == np.float32
    assert back.paths == data.paths and back.class_names == data.class_names
    assert back.attrs["unreadable_files"] == ["bad.png"]
    assert back.attrs["nested"] == {"k": [1, 2]}
    assert back.attrs["embedding_dim"] == 8 and back.attrs["logit_scale"] == 100.0
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"


def test_float16_storage_halves_the_file_and_reads_as_float32(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4000, 64)) * 5).astype(np.float32)
    paths = [f"{i}.png" for i in range(len(x))]
    full, half = tmp_path / "full.h5", tmp_path / "half.h5"
    write_image_embeddings(full, ImageEmbeddings(x, np.zeros(len(x), int), paths))
    write_image_embeddings(half, ImageEmbeddings(x, np.zeros(len(x), int), paths,
                                                 attrs={"storage_dtype": "float16"}))  # fmt: skip
    with h5py.File(half, "r") as f:
        assert f["embeddings"].dtype == np.float16 and f.attrs["storage_dtype"] == "float16"
    back = read_image_embeddings(half)
    assert back.embeddings.dtype == np.float32 and back.attrs["storage_dtype"] == "float16"
    np.testing.assert_array_equal(back.embeddings, x.astype(np.float16).astype(np.float32))
    assert read_image_embeddings(full).attrs["storage_dtype"] == "float32"
    # The embeddings are most of the file: float16 nearly halves it.
    assert half.stat().st_size < 0.6 * full.stat().st_size
    # A value beyond float16's range is refused, naming the file and what to do; no file.
    big = x.copy()
    big[7, 3] = 1e5
    with pytest.raises(EmbeddingFileError, match=r"big.h5: 1 embedding rows hold values beyond "
                       r"float16's range \(first rows \[7\]\); store .* as float32"):
        write_image_embeddings(tmp_path / "big.h5", ImageEmbeddings(
            big, np.zeros(len(x), int), paths, attrs={"storage_dtype": "float16"}))
    with pytest.raises(EmbeddingFileError, match="storage_dtype must be one of"):
        write_image_embeddings(tmp_path / "odd.h5", ImageEmbeddings(
            x, np.zeros(len(x), int), paths, attrs={"storage_dtype": "int8"}))
    assert not (tmp_path / "big.h5").exists() and not (tmp_path / "odd.h5").exists()


def test_text_round_trip(tmp_path):
    emb = np.eye(3, 4, dtype=np.float32)
    path = tmp_path / "t.h5"
    write_text_embeddings(path, TextEmbeddings(emb, ["dog", "cat", "hot dog"], ["n"] * 3,
                                               ["dog.n.01", "cat.n.01", ""], {"corpus": "c"}))
    back = read_text_embeddings(path)
    assert back.names == ["dog", "cat", "hot dog"] and back.synsets[0] == "dog.n.01"
    np.testing.assert_array_equal(back.embeddings, emb)


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("finished result")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert path.read_text() == "finished result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_reader_names_missing_key(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(EmbeddingFileError, match="missing dataset 'embeddings'"):
        read_image_embeddings(path)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(EmbeddingFileError, match="junk.h5"):
        read_text_embeddings(tmp_path / "junk.h5")


def test_model_mismatch_is_refused():
    a = {"model_arch": "ViT-B-32", "model_pretrained": "openai"}
    b = {"model_arch": "ViT-B-32", "model_pretrained": "laion2b_s34b_b79k"}
    check_same_model([("a.h5", a), ("c.h5", dict(a))])
    with pytest.raises(EmbeddingFileError, match="model mismatch.*b.h5"):
        check_same_model([("a.h5", a), ("b.h5", b)])


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 256 KiB (tmpfs): writing more than that fills it."""
    with small_filesystem(tmp_path / "small-disk", 256 * 1024) as folder:
        yield folder


# Run as a job runs it: in a process of its own. HDF5 keeps the objects it failed to flush in
# its tables and closes them when the process exits (after Python, in the C library's exit
# handler), which crashes; in the test process that would crash the whole suite at its exit.
FULL_DISK_JOB = """
import json, sys, warnings
from pathlib import Path
import numpy as np
from clustermine.atomic import OutputDiskFull
from clustermine.h5io import ImageEmbeddings, read_image_embeddings
from clustermine.h5io import write_image_embeddings

path = Path(sys.argv[1])
rng = np.random.default_rng(0)
data = ImageEmbeddings(rng.normal(size=(1000, 128)).astype(np.float32),  # 512 KB
                       np.zeros(1000, dtype=np.int64), [f"{i}.png" for i in range(1000)])
raw = []  # what h5py prints of HDF5 objects it frees ("Exception ignored in ...")
sys.unraisablehook = lambda u: raw.append(repr(u.exc_value))
try:
    write_image_embeddings(path, data)
except OutputDiskFull as err:
    out = {"message": str(err), "errno": err.errno, "oserror": isinstance(err, OSError),
           "cause": repr(err.__cause__), "left": sorted(p.name for p in path.parent.iterdir())}
    # The space is free again: a file that fits is written.
    small = ImageEmbeddings(data.embeddings[:10], data.labels[:10], data.paths[:10])
    write_image_embeddings(path, small)
    out["rows"] = len(read_image_embeddings(path))
    out["after"] = sorted(p.name for p in path.parent.iterdir())
    out["raw"] = raw
    print(json.dumps(out), flush=True)
"""


def test_a_full_disk_names_the_output_and_leaves_nothing(small_disk):
    """HDF5 reports a full disk as "Can't write data ... errno = 28" (an OSError or a
    RuntimeError raised on close) naming only the temporary file: the error names the output
    and the cause instead, and neither the temporary nor a partial output is left."""
    path = small_disk / "results" / "images" / "train.h5"
    job = subprocess.run([sys.executable, "-c", FULL_DISK_JOB, str(path)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    lines = job.stdout.strip().splitlines()
    assert lines, f"no result (exit {job.returncode}): {job.stderr[-2000:]}"
    out = json.loads(lines[-1])
    message = out["message"]
    assert message.startswith(f"{path}: cannot write this output: no space left on device")
    assert "256 KiB in all" in message and "run again" in message
    assert out["oserror"] and out["errno"] == errno.ENOSPC
    assert "errno = 28" not in message and out["cause"] == "None"
    assert out["left"] == []  # no temporary file, no partial output
    assert out["raw"] == []  # nothing printed as raw HDF5 text
    assert out["rows"] == 10 and out["after"] == ["train.h5"]


def test_a_full_disk_while_writing_text(small_disk):
    """Plain files written through atomic_path (tables, label sets): Python's own OSError."""
    path = small_disk / "labels.tsv"
    with pytest.raises(OutputDiskFull, match=f"^{path}: cannot write this output: no space"):
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            for i in range(100_000):
                f.write(f"name-{i}\tpositive\n")
    assert list(small_disk.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    """Only a full disk is translated: any other failure keeps its own type and message."""
    with pytest.raises(ValueError, match="^boom$"):
        with atomic_path(tmp_path / "x.h5"):
            raise ValueError("boom")
    assert not is_disk_full(RuntimeError("Can't write data (errno = 5, Input/output error)"))
    assert is_disk_full(RuntimeError("file write failed: errno = 28, error message = 'No "
                                     "space left on device'"))
    assert list(tmp_path.iterdir()) == []
