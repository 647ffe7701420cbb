"""Fetching a tag's files into the weight cache, once, on a machine with internet access."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from clustermine.weights.cache import cached_weights
from clustermine.weights.errors import WeightsMissing, error_cause
from clustermine.weights.messages import missing_message, short_reason
from clustermine.weights.offline import hub_cache, hub_is_offline, hub_offline
from clustermine.weights.sources import (
    pretrained_cfg,
    text_config_repo,
    tokenizer_repo,
    weight_source,
)


def fetch(
    arch: str,
    tag: str,
    cache_dir: str | os.PathLike,
    slug: str | None = None,
    configfiles: list[str] | None = None,
) -> tuple[Path, bool]:
    """Make sure the files of ``arch`` + ``tag`` are in ``cache_dir``: (weight file, whether
    it was downloaded now). Files already there are used as they are (no network)."""
    import open_clip

    source = weight_source(arch, tag)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    found = cached_weights(source, cache_dir)
    downloaded = found is None
    if found is None:
        if source.repo_id and hub_is_offline():
            raise WeightsMissing(missing_message(
                slug, arch, tag, cache_dir, "hub access is switched off (HF_HUB_OFFLINE=1)",
                configfiles, source.describe()))  # fmt: skip
        try:
            if source.repo_id:  # huggingface_hub renames a download into place when complete
                with hub_cache(cache_dir):
                    found = Path(open_clip.download_pretrained(
                        pretrained_cfg(arch, tag), cache_dir=str(cache_dir)))  # fmt: skip
            else:  # open_clip writes a URL download in place: download beside, then rename
                partial = Path(cache_dir) / ".partial"
                shutil.rmtree(partial, ignore_errors=True)
                cfg = pretrained_cfg(arch, tag)
                done = open_clip.download_pretrained(cfg, cache_dir=str(partial))
                found = Path(cache_dir) / os.path.basename(done)
                os.replace(done, found)
                shutil.rmtree(partial, ignore_errors=True)
        except Exception as err:  # noqa: BLE001 - any download failure gets the one message
            raise WeightsMissing(
                missing_message(slug, arch, tag, cache_dir, short_reason(err), configfiles,
                                source.describe())
            ) from error_cause(err)
    _fetch_text_files(arch, tag, cache_dir, slug, configfiles)
    return found, downloaded


def _fetch_text_files(arch, tag, cache_dir, slug, configfiles) -> None:
    """The tokenizer / text-tower config a model reads from the hub besides its weights."""
    repos = [r for r in (tokenizer_repo(arch), text_config_repo(arch)) if r]
    if not repos:
        return
    import open_clip

    try:
        with contextlib.ExitStack() as stack:
            if hub_is_offline():  # only what is cached already can be used
                stack.enter_context(hub_offline(cache_dir))
            else:
                stack.enter_context(hub_cache(cache_dir))
            if tokenizer_repo(arch):
                open_clip.get_tokenizer(arch, cache_dir=str(cache_dir))
            if text_config_repo(arch):
                from transformers import AutoConfig

                AutoConfig.from_pretrained(text_config_repo(arch), cache_dir=str(cache_dir))
    except Exception as err:  # noqa: BLE001
        raise WeightsMissing(missing_message(
            slug, arch, tag, cache_dir, short_reason(err), configfiles,
            what=f"the tokenizer / text-tower files of {', '.join(repos)}")) from error_cause(err)
