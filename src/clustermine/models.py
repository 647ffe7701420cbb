"""Build any open_clip model by name: pretrained tag, local checkpoint, or random weights."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from clustermine.compute import pick_device
from clustermine.weights import is_local_checkpoint, is_random

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random-weights"


@dataclass
class LoadedModel:
    model: Any
    preprocess: Any
    tokenizer: Any
    device: torch.device
    arch: str
    pretrained: str  # tag, checkpoint path, or RANDOM_WEIGHTS

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.exp().item()) if scale is not None else 100.0

    def attrs(self) -> dict[str, Any]:
        """Model attributes every embedding file carries (DESIGN §4)."""
        return {
            "model_arch": self.arch,
            "model_pretrained": self.pretrained,
            "random_weights": self.pretrained == RANDOM_WEIGHTS,
            "logit_scale": self.logit_scale,
            "preprocessing": repr(self.preprocess),
            "library_versions": library_versions(),
        }

    def autocast(self, precision: str = "auto"):
        """Mixed precision on CUDA (``auto``/``amp``), full precision otherwise."""
        if self.device.type == "cuda" and precision in ("auto", "amp", "amp_bf16"):
            dtype = torch.bfloat16 if precision == "amp_bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("clustermine", "torch", "open_clip_torch", "numpy", "h5py"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def load_model(arch: str, pretrained: str | None, device: str | None = None) -> LoadedModel:
    """Create an open_clip model with its preprocessing and tokenizer.

    ``pretrained`` is an open_clip tag (e.g. ``laion2b_s34b_b79k``), a local checkpoint
    path, or ``None`` for random weights (fine for testing plumbing, meaningless scores).
    """
    import open_clip

    from . import model_configs

    model_configs.register()
    if arch not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip architecture {arch!r}; see open_clip.list_models() "
            "(e.g. ViT-B-32, ViT-H-14) or add a model config"
        )
    dev = pick_device(device)
    if is_random(pretrained):
        log.warning(
            "MODEL %s HAS RANDOM WEIGHTS (pretrained: null): embeddings and scores are "
            "meaningless; use a pretrained tag or checkpoint for real results",
            arch,
        )
        tag, label = None, RANDOM_WEIGHTS
    else:
        tag = str(pretrained)
        if is_local_checkpoint(tag) and not Path(tag).exists():
            raise FileNotFoundError(f"model {arch}: checkpoint file {tag} does not exist")
        label = tag
    torch.manual_seed(0)  # random-weight models are reproducible
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=tag, device=dev
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    return LoadedModel(model, preprocess, tokenizer, dev, arch, label)
