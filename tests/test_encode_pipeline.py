"""The image loader sends uint8 pixels and normalises whole batches on the device
(benchmarks/bench_encode.py): the embeddings are exactly those of the per-image
preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_image_folder

from clustermine.datasets import build_index
from clustermine.encode import encode_images, split_preprocess
from clustermine.images import load_rgb
from clustermine.models import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("clustermine-tiny", None, device="cpu")


@pytest.fixture
def folder(tmp_path):
    root = make_image_folder(tmp_path / "images", {"a": 5, "b": 4}, seed=0, size=40)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    return root


@pytest.mark.parametrize("workers", [0, 1])
def test_batched_normalisation_gives_the_same_embeddings(tiny, folder, workers):
    assert split_preprocess(tiny.preprocess) is not None  # open_clip's transform is split
    index = build_index({"type": "imagefolder", "root": str(folder)})
    out = encode_images(tiny, index, batch_size=len(index), num_workers=workers,
                        max_unreadable_fraction=0.5)  # fmt: skip
    assert out.attrs["unreadable_files"] == ["b/broken.png"]
    good = [p for p in index.paths if p != "b/broken.png"]
    batch = torch.stack([tiny.preprocess(load_rgb(folder / p)) for p in good])
    with torch.inference_mode():
        ref = tiny.model.encode_image(batch).numpy()
    np.testing.assert_array_equal(out.embeddings, ref)
    assert out.paths == good


def test_other_preprocessing_runs_whole_in_the_workers(tiny, folder):
    import torchvision.transforms as T

    custom = T.Compose([T.Resize((32, 32)), T.ToTensor()])  # no Normalize: not split
    assert split_preprocess(custom) is None
    assert split_preprocess(lambda img: img) is None
    loaded = load_model("clustermine-tiny", None, device="cpu")
    loaded.preprocess = custom
    index = build_index({"type": "imagefolder", "root": str(folder)})
    out = encode_images(loaded, index, batch_size=4, max_unreadable_fraction=0.5)
    assert len(out) == len(index) - 1 and out.embeddings.dtype == np.float32


def test_an_encoding_job_starts_no_more_workers_than_its_cores(tmp_path):
    """encode.num_workers 4 on 2 cores: Snakemake gives the job 2 threads, and the job starts
    2 image-decoding workers (PyTorch warns about more), a speed setting."""
    from helpers import make_tiny_project, read_config, run_workflow, write_config

    from clustermine.compute import loader_workers

    root = make_tiny_project(tmp_path)
    config = read_config(root)
    config["encode"]["num_workers"] = 4
    write_config(root, config)
    run_workflow(root, ["results/tiny-a/images/ood.h5"], cores=2)
    logs = "".join(p.read_text() for p in (root / "logs").rglob("ood*.log"))
    assert "2 image-decoding workers (encode.num_workers 4, 2 threads given)" in logs
    assert loader_workers(4, 16) == 4 and loader_workers(0, 2) == 0
