"""Where a model's weights come from: an open_clip pretrained tag, a local checkpoint file, or
none (random weights). Torch-free, so the workflow can ask when it is parsed."""

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
