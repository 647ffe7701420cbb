"""Pretrained weights through the weight cache, offline: a tag whose files the test places in
the cache (a tiny open_clip model saved in huggingface_hub's / open_clip's cache layout) loads
through open_clip's own pretrained-tag route with hub access off; a missing one fails at once
with one message; broken checkpoints get a named error, never torch's advice to load them
unsafely. And the workflow: the local rule fetch_weights, then encoding from the cache."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.torch
import torch
from helpers import REPO, read_config, snakemake, write_config

from clustermine import weights
from clustermine.cli import main
from clustermine.h5io import read_image_embeddings, read_text_embeddings
from clustermine.models import load_model

ARCH, TAG = "clustermine-tiny", "cache_test"  # the test tag (clustermine.model_configs)
LOGIT_SCALE = 42.0  # stored in the test weights, so a loaded model shows whose weights it has


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    """Weights of clustermine-tiny (not its seed-0 random ones) as a safetensors file."""
    torch.set_num_threads(1)
    model = load_model(ARCH, None, device="cpu").model
    state = {k: v.detach().clone().contiguous() + 0.01 for k, v in model.state_dict().items()}
    state["logit_scale"] = torch.tensor(math.log(LOGIT_SCALE))
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    safetensors.torch.save_file(state, path)
    return path


def test_importing_the_weights_package_imports_no_heavy_library():
    """The Snakefile asks is_local_checkpoint / is_pretrained_tag when it is parsed (again in
    every SLURM job): the package and each of its modules load without numpy, torch, h5py,
    open_clip or huggingface_hub."""
    code = (
        "import importlib, pkgutil, sys\n"
        "from clustermine.weights import is_local_checkpoint, is_pretrained_tag\n"
        "import clustermine.weights as w\n"
        "modules = [m.name for m in pkgutil.iter_modules(w.__path__)]\n"
        "for m in modules: importlib.import_module('clustermine.weights.' + m)\n"
        "heavy = {'numpy', 'torch', 'h5py', 'open_clip', 'huggingface_hub'} & set(sys.modules)\n"
        "print(len(modules), sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)  # fmt: skip
    count, heavy = out.stdout.split(" ", 1)
    assert int(count) >= 5 and heavy.strip() == "[]"


def test_every_name_the_project_imports_from_weights_is_there():
    """The split into modules kept every name that src, workflow, tests and benchmarks take
    from clustermine.weights."""
    names = set()
    files = [p for folder in ("src", "workflow", "tests", "benchmarks")
             for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".smk")]  # fmt: skip
    for path in files:
        text = path.read_text()
        for group in re.findall(r"^\s*from clustermine\.weights import (\([^)]*\)|[^\n]+)", text,
                                re.M):
            names |= {n.split(" as ")[0].strip() for n in group.strip("()").split(",")} - {""}
        if re.search(r"^from clustermine import .*\bweights\b", text, re.M):
            names |= set(re.findall(r"(?<![\w.'\"/])weights\.([A-Za-z_]\w*)", text))
    assert {"is_local_checkpoint", "is_pretrained_tag", "fetch", "missing_message"} <= names
    assert [n for n in sorted(names) if not hasattr(weights, n)] == []


def no_library_traceback(err: BaseException) -> bool:
    """Nothing chained behind the error: Python prints the message, not a hub traceback."""
    return err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_a_cached_tag_loads_offline_through_open_clip(weight_file, tmp_path):
    cache = tmp_path / "cache"
    placed = weights.place_in_cache(weight_file, ARCH, TAG, cache)
    # huggingface_hub's own layout: refs/main -> snapshots/<commit>/<file>
    repo = cache / "models--clustermine--clustermine-tiny-cache-test"
    assert placed == repo / "snapshots" / (repo / "refs/main").read_text() / \
        "open_clip_model.safetensors"
    assert weights.fetch(ARCH, TAG, cache, slug="m") == (placed, False)  # nothing downloaded
    loaded = load_model(ARCH, TAG, device="cpu", cache_dir=cache, slug="m")
    assert loaded.pretrained == TAG and loaded.logit_scale == pytest.approx(LOGIT_SCALE)
    expected = safetensors.torch.load_file(weight_file)
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert not os.environ.get("HF_HUB_CACHE", "").startswith(str(cache))  # switched back


def test_a_url_tag_is_downloaded_into_the_cache_folder(weight_file, tmp_path, monkeypatch):
    """Tags open_clip downloads from a URL (here a file:// one, so that the download really
    runs offline): fetched into the cache under their file name, then loaded from there."""
    from open_clip import pretrained

    served = tmp_path / "served" / "tiny-url-test.pt"
    served.parent.mkdir()
    torch.save(safetensors.torch.load_file(weight_file), served)
    monkeypatch.setitem(pretrained._PRETRAINED[ARCH], "url_test",
                        pretrained._pcfg(url=served.as_uri()))  # fmt: skip
    cache = tmp_path / "cache"
    path, downloaded = weights.fetch(ARCH, "url_test", cache)
    assert (path, downloaded) == (cache / "tiny-url-test.pt", True)
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-url-test.pt"]  # nothing partial
    assert weights.fetch(ARCH, "url_test", cache) == (path, False)
    loaded = load_model(ARCH, "url_test", device="cpu", cache_dir=cache)
    assert loaded.logit_scale == pytest.approx(LOGIT_SCALE)


def test_missing_weights_fail_at_once_with_one_message(tmp_path):
    cache = tmp_path / "empty-cache"
    start = time.monotonic()
    with pytest.raises(weights.WeightsMissing) as err:
        load_model(ARCH, TAG, device="cpu", cache_dir=cache, slug="vit-tiny")
    assert time.monotonic() - start < 5  # no hub retries
    message = str(err.value)
    for part in ("model 'vit-tiny'", ARCH, f"pretrained {TAG}", str(cache),
                 "clustermine fetch", "--model vit-tiny", "models.vit-tiny.pretrained"):
        assert part in message, part
    assert no_library_traceback(err.value)
    # fetch itself, with hub access off: the same message, and why downloading failed
    with pytest.raises(weights.WeightsMissing, match="HF_HUB_OFFLINE=1"):
        weights.fetch(ARCH, TAG, cache, slug="vit-tiny")
    # without a weight cache (open_clip's own download route): the same kind of message
    with pytest.raises(weights.WeightsMissing, match="model 'vit-tiny'.*not in open_clip") as err:
        load_model(ARCH, TAG, device="cpu", slug="vit-tiny")
    assert no_library_traceback(err.value)
    with pytest.raises(weights.WeightsError, match="no pretrained tag 'nope'.*cache_test"):
        load_model(ARCH, "nope", device="cpu", cache_dir=cache)


def test_the_traceback_is_there_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.TRACEBACK_ENV, "1")
    with pytest.raises(weights.WeightsMissing) as err:
        load_model(ARCH, TAG, device="cpu", slug="m")
    assert err.value.__cause__ is not None


def _broken_checkpoints(folder):
    """A file of random bytes, a safetensors file with a broken header, and the state dicts
    of another architecture (ViT-S-32) as .pt and as .safetensors."""
    import open_clip

    rng = np.random.default_rng(0)
    (folder / "random.pt").write_bytes(rng.bytes(4096))
    (folder / "broken.safetensors").write_bytes(b"\x20\x00\x00\x00\x00\x00\x00\x00{\"w\":{")
    with torch.device("meta"):
        other = open_clip.create_model("ViT-S-32", device="meta")
    state = {k: torch.zeros(v.shape) for k, v in other.state_dict().items()
             if k.startswith(("visual.conv1", "visual.ln_pre", "visual.class_embedding"))}
    state["head.weight"] = torch.zeros(3, 3)  # fmt: skip
    torch.save(state, folder / "other-arch.pt")
    safetensors.torch.save_file(state, folder / "other-arch.safetensors")
    return {
        "random.pt": "not a PyTorch/open_clip checkpoint",
        "broken.safetensors": "not a valid safetensors file",
        "other-arch.pt": "weights of another architecture",
        "other-arch.safetensors": "weights of another architecture",
    }


def test_broken_checkpoints_get_a_named_error(tmp_path):
    for name, problem in _broken_checkpoints(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(weights.WeightsUnreadable) as err:
            load_model(ARCH, str(path), device="cpu", slug="mine")
        message = str(err.value)
        assert message.startswith(f"models.mine.pretrained: {path} cannot be loaded"), message
        assert problem in message, message
        assert "weights_only" not in message and no_library_traceback(err.value)
    assert "missing keys" in message and "unexpected keys" in message


NOT_CHECKPOINTS = {  # file name: what the message says the file is
    "notes.pt": "it is a text file, beginning 'a')",  # torch: IndexError: pop from empty list
    "readme.txt": "it is a text file, beginning 'hello')",  # torch: KeyError
    "notes.safetensors": "it is a text file, beginning 'weights: see the shared drive')",
    "random.bin": "its bytes are not tensors saved by torch.save",
    "empty.pt": "the file is empty",
    "empty.safetensors": "the file is empty",
    "truncated.pt": "a truncated or damaged zip archive",
    "truncated.safetensors": "not a valid safetensors file",
    "list.pt": "it holds no state dict of tensors but a list",
}


@pytest.fixture(scope="module")
def not_checkpoints(weight_file, tmp_path_factory):
    """Files that are not checkpoints, named as a model's ``pretrained``: text, random bytes,
    empty files, the first half of real checkpoints, a pickled list."""
    folder = tmp_path_factory.mktemp("not-checkpoints")
    (folder / "notes.pt").write_text("a\n")
    (folder / "readme.txt").write_text("hello\nthese are not weights\n")
    (folder / "notes.safetensors").write_text("weights: see the shared drive\n")
    (folder / "random.bin").write_bytes(np.random.default_rng(1).bytes(10_000))
    (folder / "empty.pt").write_bytes(b"")
    (folder / "empty.safetensors").write_bytes(b"")
    torch.save(safetensors.torch.load_file(weight_file), folder / "real.pt")
    for real, cut in ((folder / "real.pt", "truncated.pt"), (weight_file, "truncated.safetensors")):
        data = real.read_bytes()
        (folder / cut).write_bytes(data[: len(data) // 2])
    torch.save([1, 2], folder / "list.pt")
    return folder


@pytest.mark.parametrize("name", sorted(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_is_named(not_checkpoints, name):
    """Every way of reading a local checkpoint (loading the model through open_clip, reading
    its keys and shapes) says which file is not a checkpoint and what it is instead; never
    torch's own IndexError / KeyError / advice to load it unsafely."""
    from clustermine.models import CheckpointUnreadable, checkpoint_shapes

    path = not_checkpoints / name
    with pytest.raises(weights.WeightsUnreadable) as err:
        load_model(ARCH, str(path), device="cpu", slug="mine")
    message = str(err.value)
    assert message.startswith(f"models.mine.pretrained: {path} cannot be loaded as the weights "
                              f"of {ARCH}: it is not a PyTorch/open_clip checkpoint ("), message
    assert NOT_CHECKPOINTS[name] in message, message
    assert "weights_only" not in message and no_library_traceback(err.value)
    with pytest.raises(CheckpointUnreadable) as err:
        checkpoint_shapes(path)
    assert str(err.value).startswith(f"{path}: it is not a PyTorch/open_clip checkpoint (")
    assert NOT_CHECKPOINTS[name] in str(err.value) and no_library_traceback(err.value)


def test_the_whole_checkpoint_still_loads(not_checkpoints):
    from clustermine.models import checkpoint_shapes, model_shapes

    assert checkpoint_shapes(not_checkpoints / "real.pt") == model_shapes(ARCH)
    loaded = load_model(ARCH, str(not_checkpoints / "real.pt"), device="cpu")
    assert loaded.logit_scale == pytest.approx(LOGIT_SCALE)


def test_a_folder_is_not_a_checkpoint(tmp_path):
    folder = tmp_path / "weights.pt"
    folder.mkdir()
    with pytest.raises(weights.WeightsUnreadable, match="it is a folder, not a checkpoint file"):
        load_model(ARCH, str(folder), device="cpu", slug="mine")


def test_a_broken_file_in_the_cache_is_named_too(tmp_path):
    _broken_checkpoints(tmp_path)
    placed = weights.place_in_cache(tmp_path / "broken.safetensors", ARCH, TAG, tmp_path / "c")
    with pytest.raises(weights.WeightsUnreadable, match="not a valid safetensors") as err:
        load_model(ARCH, TAG, device="cpu", cache_dir=tmp_path / "c", slug="mine")
    assert str(placed) in str(err.value) and "clustermine fetch" in str(err.value)


def test_fetch_command(tiny_project, weight_file, capsys):
    config = read_config(tiny_project)
    config["models"]["tiny-t"] = {"arch": ARCH, "pretrained": TAG}
    config["weights_cache"] = str(tiny_project / "cache")
    cfg = str(write_config(tiny_project, config))
    assert main(["fetch", "--configfile", cfg]) == 1
    out = capsys.readouterr()
    assert "tiny-a: clustermine-tiny (random weights): nothing to fetch" in out.out
    assert f"clustermine fetch --configfile {cfg} --model tiny-t" in out.err
    assert "1 of 2 models failed: tiny-t" in out.err
    # Weights downloaded on another machine, placed in the cache; then fetching finds them.
    assert main(["fetch", "--configfile", cfg, "--model", "tiny-t", "--file",
                 str(weight_file)]) == 0
    assert "already in the cache" in capsys.readouterr().out
    assert main(["fetch", "--configfile", cfg, "--model", "nope"]) == 2


def test_workflow_fetches_once_and_encodes_from_the_cache(tiny_project, weight_file):
    config = read_config(tiny_project)
    config["models"] = {"tiny-t": {"arch": ARCH, "pretrained": TAG, "batch_size": 8}}
    write_config(tiny_project, config)
    targets = ["results/tiny-t/images/ood.h5", "results/tiny-t/text/words.simple.h5"]
    # Offline, weights not in the cache: the local rule fails with the one message.
    out = snakemake(tiny_project, "--cores", "2", *targets)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "Error in rule fetch_weights" in text
    assert "model 'tiny-t' (clustermine-tiny, pretrained cache_test): its weights are not in " \
           "the weight cache resources/weights" in text
    assert "huggingface_hub/" not in text and "open_clip/" not in text  # no library traceback
    assert not (tiny_project / "results").exists()
    # The weights in the cache; hub access not switched off and no other cache to fall back
    # on: the jobs load from the weight cache by themselves.
    weights.place_in_cache(weight_file, ARCH, TAG, tiny_project / "resources/weights")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_HOME"] = str(tiny_project / "no-hf-home")
    snakemake(tiny_project, "--cores", "2", *targets, check=True, env=env)
    images = read_image_embeddings(tiny_project / targets[0])
    text_emb = read_text_embeddings(tiny_project / targets[1])
    for attrs in (images.attrs, text_emb.attrs):
        assert attrs["model_pretrained"] == TAG and not attrs["random_weights"]
        assert attrs["logit_scale"] == pytest.approx(LOGIT_SCALE)
    marker = weights.read_marker(tiny_project / f"resources/weights/fetched/{ARCH}/{TAG}.json")
    assert marker["arch"] == ARCH and marker["file"].endswith("open_clip_model.safetensors")
    assert not (tiny_project / "no-hf-home").exists()
    # The cache folder is a speed setting: moving it reruns nothing.
    moved = snakemake(tiny_project, "-n", "--cores", "1", *targets, "--config",
                      f"weights_cache={tiny_project / 'elsewhere'}", check=True)
    assert "Nothing to be done" in moved.stdout + moved.stderr
