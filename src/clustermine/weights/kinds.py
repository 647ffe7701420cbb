"""What a model's ``pretrained`` value is: random weights, a local checkpoint file, or an
open_clip pretrained tag (asked by the workflow when it is parsed: no imports beyond the
standard library)."""

from __future__ import annotations

import os

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def is_random(pretrained: str | None) -> bool:
    """``pretrained: null`` (or an empty / "none" / "random" value): random weights."""
    return pretrained is None or str(pretrained).lower() in ("", "none", "null", "random")


def is_local_checkpoint(pretrained: str | None) -> bool:
    """A path to a checkpoint file rather than a pretrained tag."""
    if is_random(pretrained):
        return False
    text = str(pretrained)
    return os.sep in text or text.endswith(CHECKPOINT_SUFFIXES)


def is_pretrained_tag(pretrained: str | None) -> bool:
    """An open_clip pretrained tag: its files must be fetched into the weight cache."""
    return not is_random(pretrained) and not is_local_checkpoint(pretrained)
