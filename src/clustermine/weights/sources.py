"""Where open_clip gets a pretrained tag's files: its record of the tag, the Hugging Face
repository or URL of the weights, and the repositories of the text files read beside them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from clustermine.weights.errors import WeightsError

# open_clip's default file name in a Hugging Face repository, and its safetensors twin.
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"


@dataclass(frozen=True)
class WeightSource:
    """Where open_clip downloads the weights of ``arch`` + ``tag`` from: a Hugging Face
    repository (``repo_id``, candidate ``filenames``, the preferred first) or a URL."""

    arch: str
    tag: str
    repo_id: str | None = None
    filenames: tuple[str, ...] = ()
    url: str | None = None

    def describe(self) -> str:
        if self.repo_id:
            return f"hf-hub:{self.repo_id}/" + " or ".join(self.filenames)
        return str(self.url)


def _safe_alternatives(filename: str) -> list[str]:
    """The safetensors files open_clip tries before ``filename`` (as its own
    ``_get_safe_alternatives``)."""
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors"]
    return []


def _open_clip():
    """open_clip, with the project's own model configs registered."""
    import open_clip

    from clustermine import model_configs

    model_configs.register()
    return open_clip


def pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's record of a pretrained tag; an unknown tag is a clear error."""
    open_clip = _open_clip()
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsError(
            f"open_clip knows no pretrained tag {tag!r} for architecture {arch!r} "
            f"(its tags: {', '.join(tags) or 'none'}); fix models.<slug>.pretrained, or give "
            "a local checkpoint file"
        )
    return cfg


def weight_source(arch: str, tag: str) -> WeightSource:
    """Where open_clip fetches ``arch`` + ``tag`` from (the hub when the tag names a
    repository, as open_clip prefers, else its URL)."""
    cfg = pretrained_cfg(arch, tag)
    if "file" in cfg:  # a tag registered with a local file
        return WeightSource(arch, tag, url=cfg["file"])
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        return WeightSource(arch, tag, repo_id, (*_safe_alternatives(filename), filename))
    return WeightSource(arch, tag, url=cfg["url"])


def _text_cfg_repo(arch: str, key: str) -> str | None:
    text_cfg = (_open_clip().get_model_config(arch) or {}).get("text_cfg", {})
    name = text_cfg.get(key)
    return name if name and not os.path.isdir(name) else None


def tokenizer_repo(arch: str) -> str | None:
    """The Hugging Face repository of a model's tokenizer when it is not open_clip's own
    (SigLIP models), which must be fetched with the weights."""
    return _text_cfg_repo(arch, "hf_tokenizer_name")


def text_config_repo(arch: str) -> str | None:
    """The Hugging Face repository whose ``config.json`` a transformer text tower reads."""
    return _text_cfg_repo(arch, "hf_model_name")
