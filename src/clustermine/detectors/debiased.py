"""The debiased score of debiased negative mining (Peng, Lu, Zhang, Fang, KDD 2026).

Negatives mined without ID labels contain ID-like names (false negatives). With A(x) the ID
mass Σ_c e^{s_c/T} over the C positives, the M negatives permuted by a seeded permutation and
split into G groups of Q = ⌊M/G⌋ (the remainder dropped), and B_j(x) = Σ_{k∈G_j} e^{⟨x̂,n̂_k⟩/T}:

    Z_j(x) = A + Q · [ (1/τ) · B_j/Q − ((1−τ)/τ) · A/C ],     S(x) = mean_j A / Z_j,

as the official code computes it (no clamp), with τ the share of true negatives
(``tau_ood``). Rewritten, Z_j = A(1 − κ) + B_j/τ with κ = Q(1 − τ)/(τC): for κ < 1 both terms
are positive, so Z_j > 0 for every image and group and A/Z_j is computed exactly in log space
as −logaddexp(log(1 − κ), log(B_j/(τA))). For κ ≥ 1 (few ID classes, many negatives per
group) Z_j is a difference and is ≤ 0 for typical ID images, where A/Z_j has no meaning. So κ
is computed and recorded; ``kappa: adapt_groups`` (the default) raises G until κ < 1, loudly,
and ``kappa: refuse`` stops instead: a fitted detector never meets Z_j ≤ 0.

Only a detector whose saved state has κ ≥ 1 (not one fitted here) can meet it. There, Z_j is
floored at ε·B_j/τ (ε = 2^−52, the float64 rounding of the difference's larger term: below it
the sign of Z_j is unknown), which keeps A/Z_j finite and rising as B_j falls; the floored
(image, group) pairs are counted (``score_stats["clamped_pairs"]``) and a warning is logged.

The returned score is log S (T = 0.01 overflows float32); τ = 1 gives exactly the grouped
NegLabel score (clustermine.detectors.eq1_grouped) on the same groups. The official code
averages S over the positive classes too, which divides it by C: the same ranking.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from scipy.special import logsumexp

from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.detectors.streaming import segment_reduce

log = logging.getLogger(__name__)

KAPPA_MODES = ("adapt_groups", "refuse")
# Where κ ≥ 1, Z_j is floored at EPS · B_j/τ (module docstring).
LOG_EPS = math.log(np.finfo(np.float64).eps)


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
        c, tau_ood = len(self.text_pos.names), float(self.params["tau_ood"])
        log_s, clamped = log_group_shares(lse_pos, lse_neg, q, c, tau_ood)
        if clamped:
            log.warning(
                "%s: kappa %.3g >= 1 in the state of %s: Z_j <= 0 (to float64 rounding) for %d "
                "of %d (image, group) pairs, floored at 2^-52 B_j/tau; refit it to get kappa < 1",
                self.name, kappa(q, tau_ood, c), self.path or "this detector", clamped,
                lse_neg.size,
            )  # fmt: skip
        self.score_stats = {"clamped_pairs": clamped, "pairs": int(lse_neg.size)}
        return logsumexp(log_s, axis=1) - np.log(groups)


def log_group_shares(
    lse_pos: np.ndarray, lse_neg: np.ndarray, q: int, c: int, tau_ood: float
) -> tuple[np.ndarray, int]:
    """log(A/Z_j) per image and group from log A [N, 1] and log B_j [N, G] (float64), and how
    many pairs had Z_j ≤ ε·B_j/τ and were floored there (only possible for κ ≥ 1)."""
    k = kappa(q, tau_ood, c)
    r = np.asarray(lse_neg, np.float64) - math.log(tau_ood) - np.asarray(lse_pos, np.float64)
    if k < 1.0:  # Z_j/A = (1 − κ) + B_j/(τA), both terms positive; τ = 1 is Eq. 1 exactly
        return -np.logaddexp(math.log1p(-k), r), 0
    # Z_j/A = e^r · (1 − (κ − 1) e^{−r}): ≤ 0 where (κ − 1) e^{−r} ≥ 1.
    with np.errstate(divide="ignore", over="ignore"):
        excess = np.exp(np.minimum(math.log(k - 1.0) - r, 0.0)) if k > 1.0 else np.zeros_like(r)
        log_rest = np.log1p(-excess)
    floored = log_rest < LOG_EPS
    return -(r + np.maximum(log_rest, LOG_EPS)), int(floored.sum())
