"""Hugging Face hub access for the weights: switched off for a block (jobs load from the
weight cache only), the weight cache made the hub cache, and whether an error says that a
file is not cached and could not be downloaded."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def hub_offline(cache_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Switch Hugging Face hub access off (and, with ``cache_dir``, make it the hub cache
    that every library reading the hub uses: open_clip, timm, transformers) for the block."""
    import huggingface_hub.constants as hub

    saved = (hub.HF_HUB_OFFLINE, hub.HF_HUB_CACHE)
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    hub.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    if cache_dir is not None:
        hub.HF_HUB_CACHE = str(cache_dir)
        os.environ["HF_HUB_CACHE"] = str(cache_dir)
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, hub.HF_HUB_CACHE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def hub_cache(cache_dir: str | os.PathLike) -> Iterator[None]:
    """Make ``cache_dir`` the hub cache for the block (downloads allowed)."""
    import huggingface_hub.constants as hub

    saved = hub.HF_HUB_CACHE
    hub.HF_HUB_CACHE = str(cache_dir)
    try:
        yield
    finally:
        hub.HF_HUB_CACHE = saved


def hub_is_offline() -> bool:
    """Whether hub access is switched off (``HF_HUB_OFFLINE=1`` or :func:`hub_offline`)."""
    import huggingface_hub.constants as hub

    return bool(hub.HF_HUB_OFFLINE)


_OFFLINE_SIGNS = (
    "offline mode is enabled",
    "outgoing traffic has been disabled",
    "cannot find the requested files in the local cache",
    "couldn't find them in the cached files",
    "LocalEntryNotFound",
)


def is_offline_error(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) says a hub file is not cached and could
    not be downloaded."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = f"{type(err).__name__}: {err}"
        if any(sign in text for sign in _OFFLINE_SIGNS):
            return True
        err = err.__cause__ or err.__context__
    return False
