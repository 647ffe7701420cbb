"""The debiased score of debiased negative mining (Peng, Lu, Zhang, Fang, KDD 2026).

Negatives mined without ID labels contain ID-like names (false negatives). With A(x) the ID
mass Σ_c e^{s_c/T} over the C positives, the M negatives permuted by a seeded permutation and
split into G groups of Q = ⌊M/G⌋ (the remainder dropped), and B_j(x) = Σ_{k∈G_j} e^{⟨x̂,n̂_k⟩/T}:

    Z_j(x) = A + Q · [ (1/τ) · B_j/Q − ((1−τ)/τ) · A/C ],     S(x) = mean_j A / Z_j,

the bracket being the debiased estimate of the mean negative mass, with τ the share of true
negatives (``tau_ood``). Rewritten, Z_j = A(1 − κ) + B_j/τ with κ = Q(1 − τ)/(τC): for κ ≥ 1
(few ID classes, many negatives per group) Z_j goes negative for typical ID images and a clamp
would decide the ranking. So κ is computed and recorded; ``kappa: adapt_groups`` (the default)
raises G until κ < 1, loudly, and ``kappa: refuse`` stops instead. As in the debiased
contrastive estimator the bracket comes from, it is clamped at its theoretical minimum
e^{−1/T} (no cosine is below −1), and the clamped (image, group) pairs are counted.

The returned score is log S, computed in log space (T = 0.01 overflows float32); τ = 1 gives
exactly the grouped NegLabel score (clustermine.detectors.eq1_grouped) on the same groups.
The official code averages S over the positive classes too, which divides it by C: the same
ranking.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import logsumexp

from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.eq1 import log_positive_share
from clustermine.detectors.streaming import segment_reduce

KAPPA_MODES = ("adapt_groups", "refuse")


def kappa(q: int, tau: float, c: int) -> float:
    """κ = Q(1 − τ)/(τ C)."""
    return q * (1.0 - tau) / (tau * c)


def groups_for_kappa(m: int, groups: int, tau: float, c: int) -> int | None:
    """The smallest G' ≥ ``groups`` with κ(⌊M/G'⌋) < 1, or None when even Q = 1 is too many."""
    if tau >= 1.0:
        return groups
    q_max = math.ceil(tau * c / (1.0 - tau)) - 1  # the largest Q with κ < 1
    if q_max < 1:
        return None
    return min(m, max(groups, m // (q_max + 1) + 1))


class DebiasedDetector(Detector):
    name = "debiased"

    @property
    def tau(self) -> float:
        """The softmax temperature T (recorded as τ like the other Eq. 1 scores)."""
        t = float(self.params["temperature"])
        if not np.isfinite(t) or t <= 0:
            raise DetectorConfigError(f"{self.name}: temperature must be positive, got {t}")
        return t

    def _fit(self, train, labels) -> None:
        p = self.params
        tau_ood, mode = float(p["tau_ood"]), p["kappa"]
        if not 0.0 < tau_ood <= 1.0:
            raise DetectorConfigError(f"{self.name}: tau_ood must be in (0, 1], got {tau_ood}")
        if mode not in KAPPA_MODES:
            raise DetectorConfigError(f"{self.name}: kappa must be one of {KAPPA_MODES}")
        m, c, groups = len(self.text_neg.names), len(self.text_pos.names), int(p["groups"])
        if not 1 <= groups <= m:
            raise DetectorConfigError(
                f"{self.name}: groups must be between 1 and the {m} negatives, got {groups}"
            )
        asked = kappa(m // groups, tau_ood, c)
        if asked >= 1.0:
            better = groups_for_kappa(m, groups, tau_ood, c)
            advice = (
                f"use at least groups: {better}" if better else "raise tau_ood or the positives"
            )
            if mode == "refuse" or better is None:
                raise DetectorConfigError(
                    f"{self.name}: kappa = Q(1 - tau_ood)/(tau_ood C) = {asked:.3g} >= 1 with "
                    f"{c} positives, {m} negatives in {groups} groups (Q = {m // groups}): the "
                    f"debiased partition function would be negative for typical ID images; "
                    f"{advice} (or kappa: adapt_groups)"
                )
            self.warn(
                f"KAPPA {asked:.3g} >= 1 with {c} positives and groups of {m // groups} "
                f"negatives: using {better} groups instead of {groups} "
                f"(Q = {m // better}, kappa {kappa(m // better, tau_ood, c):.3g})"
            )
            groups = better
        q = m // groups
        perm = np.random.default_rng(int(p["seed"])).permutation(groups * q)
        self.state = {"permutation": perm.astype(np.int64), "groups": np.int64(groups)}
        self.fit_stats.update(
            {"kappa": kappa(q, tau_ood, c), "groups": groups, "group_size": q,
             "dropped_negatives": m - groups * q}  # fmt: skip
        )

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        if "permutation" not in self.state:
            raise DetectorConfigError(f"{self.name}: detector used before fit")
        neg = self.texts_on_device("neg")
        perm = torch.as_tensor(self.state["permutation"], device=neg.device)
        groups = int(self.state["groups"])
        q = len(perm) // groups
        segments = [self.texts_on_device("pos")]
        segments += [(neg, perm[j * q : (j + 1) * q]) for j in range(groups)]
        lse = segment_reduce(image_emb, segments, 1.0 / self.tau, self.budget_bytes)["lse"]
        lse_pos, lse_neg = lse[:, :1], lse[:, 1:]
        tau_ood = float(self.params["tau_ood"])
        if tau_ood == 1.0:
            neg_term, clamped = lse_neg, 0  # Z_j = A + B_j: grouped NegLabel
        else:
            c = len(self.text_pos.names)
            log_a = lse_neg - math.log(q) - math.log(tau_ood)  # (1/τ) · B_j / Q
            log_b = lse_pos - math.log(c) + math.log((1 - tau_ood) / tau_ood)  # ((1−τ)/τ) A/C
            with np.errstate(divide="ignore", invalid="ignore"):
                gap = np.where(log_a > log_b, log_a + np.log1p(-np.exp(log_b - log_a)), -np.inf)
            floor = -1.0 / self.tau  # log e^{−1/T}
            clamped = int((gap < floor).sum())
            neg_term = math.log(q) + np.maximum(gap, floor)
        self.score_stats = {"clamped_pairs": clamped, "pairs": int(lse_neg.size)}
        log_s = log_positive_share(lse_pos, neg_term)
        return logsumexp(log_s, axis=1) - np.log(groups)
