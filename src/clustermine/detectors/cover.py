"""CoVer (Zhang et al., NeurIPS 2024): the mean of a base score over the original image and its
corrupted views (:mod:`clustermine.views`),

    S(x) = (S_base(x) + Σ_v S_base(view_v(x))) / (1 + |V|),

MCM by default, as in the official code. The base is any score over label texts that keeps no
test-time state; its parameters are ``base_params``. A view list of none is the base score."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from clustermine import catalog
from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.views import ViewError, expand_views

class CoVerDetector(Detector):
    name = "cover"

    def __init__(self, text_pos, text_neg, logit_scale, params=None, meta=None) -> None:
        super().__init__(text_pos, text_neg, logit_scale, params, meta)
        try:
            self.views = expand_views(self.params["views"])
        except ViewError as err:
            raise DetectorConfigError(f"score 'cover': {err}") from None
        base = catalog.score(self.params["base"])
        self.base = base.load()(
            text_pos, text_neg, logit_scale, self.params["base_params"], meta
        )
        self.params["base_params"] = self.base.params  # resolved, so the file records them

    def set_runtime(self, device=None, budget_bytes=None) -> "CoVerDetector":
        super().set_runtime(device, budget_bytes)
        if hasattr(self, "base"):
            self.base.set_runtime(device, budget_bytes)
        return self

    @property
    def tau(self) -> float | None:
        return self.base.tau

    def _fit(self, train, labels) -> None:
        self.base._fit(train, labels)
        self.state = self.base.state  # CoVer's fitted state is its base's
        for message in self.base.fit_stats.get("warnings", []):
            self.warn(message)

    def _score(self, image_emb: np.ndarray, views: Sequence[np.ndarray]) -> np.ndarray:
        if len(views) != len(self.views):
            raise DetectorConfigError(
                f"score 'cover' averages over {len(self.views)} views ({list(self.views)}), "
                f"but {len(views)} view embeddings were given"
            )
        if self.base.text_pos is not self.text_pos or self.base.text_neg is not self.text_neg:
            # The detector's own rows (a loaded file's, as stored), not a second normalisation.
            self.base.text_pos, self.base.text_neg = self.text_pos, self.text_neg
            self.base._device_texts.clear()
        self.base.state = self.state  # a loaded file's, or a reset's
        total = np.asarray(self.base._score(image_emb), dtype=np.float64)
        for view in views:
            total = total + self.base._score(view)
        return total / (1 + len(views))
