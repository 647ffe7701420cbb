"""GL-MCM (Miyai et al., IJCV 2025): MCM of the global image embedding plus λ times the
largest MCM of any of its local patch features (:mod:`clustermine.local_features`),

    S(x) = MCM(g(x)) + λ · max_p MCM(l_p(x)),

each MCM the largest softmax probability of cosine / T over the positives (official defaults
T = 1, λ = 1). A grid of one patch gives the MCM of that one local feature as the local
term; λ = 0 is MCM."""

from __future__ import annotations

import numpy as np

from clustermine.detectors.base import Detector
from clustermine.detectors.mcm import max_softmax


class GLMCMDetector(Detector):
    name = "gl_mcm"

    def _score(self, image_emb: np.ndarray, local: np.ndarray) -> np.ndarray:
        texts = self.texts_on_device("pos")
        t = float(self.params["temperature"])
        score = max_softmax(image_emb, texts, t, self.budget_bytes)
        n, patches, dim = local.shape
        # Images a block at a time, so that float16 storage becomes float32 a block at a time.
        step = max(1, self.budget_bytes // max(1, 4 * patches * (dim + texts.shape[0] + 1)))
        best = np.empty(n)
        for s in range(0, n, step):
            block = np.asarray(local[s : s + step], dtype=np.float32).reshape(-1, dim)
            per_patch = max_softmax(block, texts, t, self.budget_bytes)
            best[s : s + step] = per_patch.reshape(-1, patches).max(axis=1)
        return score + float(self.params["lam"]) * best
