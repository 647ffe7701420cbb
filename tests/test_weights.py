"""Pretrained weights through the weight cache, offline: a tag whose files the test places in
the cache (a tiny open_clip model saved in huggingface_hub's / open_clip's cache layout) loads
through open_clip's own pretrained-tag route with hub access off; a missing one fails at once
with one message; broken checkpoints get a named error, never torch's advice to load them
unsafely. And the workflow: the local rule fetch_weights, then encoding from the cache."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import safetensors.torch
import torch
from helpers import read_config, snakemake, write_config

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
        "random.pt": "not a PyTorch checkpoint",
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
