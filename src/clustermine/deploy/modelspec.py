"""Which model a detector needs, where its weights are, and building it.

A detector file records the model its embeddings came from (``model_arch``,
``model_pretrained``: an open_clip tag, a checkpoint path or ``random-weights``, and the
preprocessing). ``model_pretrained`` is the model's *identity*, compared with the attributes
of any embeddings scored; the weights actually loaded may be elsewhere: a checkpoint path
relative to the workflow's folder, a file given by the user, or the weights a bundle carries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from clustermine.weights import is_local_checkpoint, is_random

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random-weights"  # clustermine.models.RANDOM_WEIGHTS, without importing torch
# How many folders above a detector file a relative checkpoint path is looked for in: a
# workflow's detector is results/{model}/detectors/{file}, three below the workflow's folder.
SEARCH_PARENTS = 4


class ModelUnavailable(RuntimeError):
    """The detector's model cannot be built here (weights missing, not recorded, ...)."""


@dataclass
class ModelSpec:
    arch: str | None
    pretrained: str | None  # identity: tag, checkpoint path as recorded, or RANDOM_WEIGHTS
    preprocessing: str | None = None
    weights: str | None = None  # the file to load, where it is not ``pretrained`` itself
    origin: str = ""  # the detector file or bundle, for messages
    weights_cache: str | None = None  # the workflow's weight cache, for open_clip tags

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], origin: str) -> "ModelSpec":
        def get(key):
            value = meta.get(key)
            return None if value in (None, "none") else str(value)

        return cls(get("model_arch"), get("model_pretrained"), get("preprocessing"), None, origin)

    @classmethod
    def of_detector(
        cls,
        meta: Mapping[str, Any],
        origin: str,
        *,
        weights: str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None,
        weights_cache: str | os.PathLike | None = None,
    ) -> "ModelSpec":
        """The model of a detector file (its ``meta``), ``origin`` naming it in messages:
        ``weights`` a bundle carries, ``checkpoint`` a file the user gives instead (checked),
        ``weights_cache`` the workflow's weight cache of open_clip tags."""
        spec = cls.from_meta(meta, origin)
        spec.weights = str(weights) if weights is not None else None
        if checkpoint is not None:
            spec.weights = resolve_checkpoint(checkpoint)
        spec.weights_cache = None if weights_cache is None else str(weights_cache)
        return spec

    @property
    def random_weights(self) -> bool:
        if self.arch is None:
            return False
        return self.pretrained == RANDOM_WEIGHTS or (
            self.weights is None and is_random(self.pretrained)
        )

    @property
    def is_checkpoint(self) -> bool:
        return self.weights is not None or is_local_checkpoint(self.pretrained)

    def describe(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "pretrained": self.pretrained,
            "weights_file": self.weights,
            "random_weights": self.random_weights,
            "preprocessing": self.preprocessing,
        }

    def weights_to_load(self) -> str | None:
        """The ``pretrained`` argument for :func:`clustermine.models.load_model`: a tag, an
        existing checkpoint file, or None (random weights)."""
        if self.weights is not None:
            if not Path(self.weights).is_file():
                raise ModelUnavailable(
                    f"{self.origin}: the model's weights file {self.weights} does not exist"
                )
            return self.weights
        if self.random_weights:
            return None
        if not is_local_checkpoint(self.pretrained):
            return self.pretrained  # an open_clip tag: open_clip's cache or the hub
        return str(self._find_checkpoint(Path(self.pretrained)))

    def _search_folders(self) -> list[Path]:
        """Where a path the workflow recorded relative to its folder may be: the current
        folder, then the folders above the detector file."""
        return [Path.cwd(), *Path(self.origin).resolve().parents[:SEARCH_PARENTS]]

    def _find_checkpoint(self, recorded: Path) -> Path:
        if recorded.is_absolute():
            candidates = [recorded]
        else:
            # The workflow records the path as written in its config, relative to its folder.
            candidates = [folder / recorded for folder in self._search_folders()]
        for path in candidates:
            if path.is_file():
                return path
        looked = ", ".join(str(p) for p in dict.fromkeys(candidates))
        raise ModelUnavailable(
            f"{self.origin} was fitted on embeddings of model {self.arch} with checkpoint "
            f"{recorded}, which is not here (looked for {looked}). Run from the workflow's "
            "folder, give the checkpoint (--checkpoint FILE; Python: "
            "clustermine.load_detector(path, checkpoint=FILE)), or use a bundle made by "
            "`clustermine export`, which carries the weights."
        )

    def build(self, device: str | None = None):
        """The open_clip model, preprocessing and tokenizer (a ``LoadedModel``)."""
        from clustermine.models import load_model

        if not self.arch:
            raise ModelUnavailable(
                f"{self.origin} records no model (model_arch): it can score precomputed "
                "embeddings only (score_embeddings, clustermine score --embeddings). Detectors "
                "fitted by the workflow record theirs."
            )
        weights = self.weights_to_load()
        cache = self._weights_cache() if weights and not is_local_checkpoint(weights) else None
        try:
            if cache:
                loaded = load_model(self.arch, weights, device, cache_dir=cache)
            else:
                loaded = load_model(self.arch, weights, device)
        except (OSError, RuntimeError, ValueError) as err:
            raise ModelUnavailable(
                f"{self.origin}: cannot build its model {self.arch} with weights "
                f"{weights or RANDOM_WEIGHTS!r}: {err}\nFor this detector you can also give "
                "the weights file (--checkpoint FILE; Python: checkpoint=FILE) or the "
                "workflow's weight cache (--weights-cache DIR), or use a bundle exported "
                "where the weights are (clustermine export), which carries them."
            ) from err
        now = repr(loaded.preprocess)
        if self.preprocessing and now != self.preprocessing:
            log.warning(
                "%s: the model's preprocessing differs from the one its embeddings were made "
                "with (another open_clip version?); scores may shift.\n recorded: %s\n now:      "
                "%s",
                self.origin,
                self.preprocessing,
                now,
            )
        return loaded

    def _weights_cache(self) -> str | None:
        """The weight cache an open_clip tag is loaded from: the one given, else the
        workflow's default cache folder where one is found (else open_clip's own caches)."""
        if self.weights_cache:
            return self.weights_cache
        from clustermine.weights import DEFAULT_CACHE

        for folder in self._search_folders():
            if (folder / DEFAULT_CACHE).is_dir():
                return str(folder / DEFAULT_CACHE)
        return None


def resolve_checkpoint(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return str(path.resolve())
