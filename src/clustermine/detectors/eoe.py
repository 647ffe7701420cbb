"""EOE, envisioning outlier exposure (Cao et al., ICML 2024; official code tmlr-group/EOE).

One softmax over the cosines / T of the ID labels (the positives) and the outlier labels (the
negatives: in the paper names an LLM envisioned, here any label set's negatives), then

    S(x) = max_{c ∈ ID} p_c(x) − β · max_{o ∈ outliers} p_o(x),

with T = 1 on raw cosines and β = 0.25 as in the official code. Computed in log space: each
probability is e^{max scaled cosine − logsumexp over all labels}, in float64, so a small T
(peaked cosines) neither overflows nor turns the score into a float32 step function.

An outlier name that is also a positive (after name normalisation) would take its own ID
class's probability as a penalty; such outliers are dropped when the detector is fitted (the
official code drops LLM names equal to an ID name), with a warning recorded in ``fit_stats``.
"""

from __future__ import annotations

import numpy as np

from clustermine.corpus import normalize_name
from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.streaming import segment_reduce
from clustermine.h5io import TextEmbeddings


class EOEDetector(Detector):
    name = "eoe"

    def _fit(self, train, labels) -> None:
        ids = {normalize_name(n) for n in self.text_pos.names}
        names = self.text_neg.names
        is_id = [normalize_name(n) in ids for n in names]
        keep = [i for i, bad in enumerate(is_id) if not bad]
        dropped = [n for n, bad in zip(names, is_id) if bad]
        if not keep:
            raise DetectorConfigError(
                f"score {self.name!r}: every one of the {len(dropped)} outlier names (the label "
                "set's negatives) is also a positive; give it outlier names that are not ID "
                "labels"
            )
        if dropped:
            shown = ", ".join(repr(n) for n in dropped[:10])
            self.warn(
                f"dropped {len(dropped)} outlier name(s) that are also positives: {shown}"
                f"{' ...' if len(dropped) > 10 else ''}"
            )
            self.text_neg = TextEmbeddings(self.text_neg.embeddings[keep], [names[i] for i in keep])
            self._device_texts.clear()
        self.fit_stats["dropped_outliers"] = dropped

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        out = segment_reduce(
            image_emb,
            [self.texts_on_device("pos"), self.texts_on_device("neg")],
            1.0 / float(self.params["temperature"]),
            self.budget_bytes,
            ("lse", "max_scaled"),
        )
        log_z = np.logaddexp(out["lse"][:, 0], out["lse"][:, 1])
        p_id = np.exp(out["max_scaled"][:, 0] - log_z)
        p_outlier = np.exp(out["max_scaled"][:, 1] - log_z)
        return p_id - float(self.params["beta"]) * p_outlier
