"""Every method with official code, re-derived from its official formula in plain NumPy
float64, independently of the implementation, on inputs that reach its edge cases: label
texts that are not unit length, exact ties (duplicate texts, an image equidistant from two
labels, equal votes), a single class, a quantile landing exactly on the 0.95 cut, and
temperatures at which cosine / τ reaches 1000, where exp overflows float32 (and float64) and
only a log-space computation stays finite.

The geometry is built from axis vectors, so that the cosines of the ties are exactly equal in
float32 as in float64. Where the implementation departs from the official formula, the test
is marked ``xfail(strict=True)`` with what differs and by how much (measured on the inputs
here and on larger random ones); it turns into a failure the day the departure is fixed, so
that the mark is removed with it.

Official code followed: MCM and MaxLogit / Energy on CLIP (deeplearning-wisc/MCM), NegLabel
(XueJiang16/NegLabel: quantile selection, grouping), Mahalanobis (pokaxpoka/
deep_Mahalanobis_detector) and relative Mahalanobis (Ren et al. 2021, its shared covariance),
CLIPScope (fu1001hao/CLIPScope), AdaNeg (OpenOOD-VLM's TTAPromptPostprocessor_noadagap);
PosMine, ClusterMine and GradNorm filtering from their papers' definitions.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from clustermine.detectors import get_detector
from clustermine.h5io import TextEmbeddings
from clustermine.mining import MiningInputs, mine_labels
from clustermine.mining.gradnorm import gradient_norms

pytestmark = pytest.mark.usefixtures("one_thread")

D = 8
SMALL_BUDGET = 2048  # a few rows per block: chunked reductions are exercised too


# --- plain NumPy float64 ----------------------------------------------------------------------


def e(*axes: float) -> np.ndarray:
    """A vector of the axis weights given, e.g. e(1, 0, 1) = e_0 + e_2 (not normalised)."""
    v = np.zeros(D)
    v[: len(axes)] = axes
    return v


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def lse(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """log Σ exp, shifted by the maximum so that nothing overflows."""
    a = np.asarray(a, dtype=np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def log_softmax(a: np.ndarray) -> np.ndarray:
    return a - lse(a)[..., None]


def texts(rows, prefix: str, scale: float = 3.0) -> TextEmbeddings:
    """Label texts, deliberately not unit length (every score must normalise them)."""
    rows = np.asarray(rows, dtype=np.float64)
    names = [f"{prefix}{i}" for i in range(len(rows))]
    return TextEmbeddings((scale * rows).astype(np.float32), names)


def overflows_float32(logits: np.ndarray) -> bool:
    """Whether the naive softmax of these logits is not finite in float32 (the edge reached)."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.exp(np.asarray(logits, dtype=np.float32))
        return not np.isfinite(z / z.sum(axis=-1, keepdims=True)).all()


def fit(name, pos=None, neg=None, logit_scale=100.0, params=None, train=None, labels=None):
    return get_detector(name).fit(train, pos, neg, logit_scale, params or {}, labels,
                                  device="cpu", budget_bytes=SMALL_BUDGET)  # fmt: skip


# The world of the label scores: three positives, two of them the same text (a tie), and
# three negatives; images on a positive, on the duplicated positive, halfway between a
# positive and a negative, on a negative, opposite a positive, and generic ones.
POS = np.stack([e(1), e(0, 1), e(0, 1)])
NEG = np.stack([e(0, 0, 1), e(0, 0, 0, 1), e(0, 0, 0, 0, 1, 1)])
RNG = np.random.default_rng(0)
IMAGES = np.concatenate([
    np.stack([e(1), 7 * e(0, 1), e(1, 0, 1), e(0, 0, 2), -e(1)]),
    RNG.normal(size=(6, D)),
])  # fmt: skip
ON_POS, ON_DUPLICATE, POS_NEG_TIE, ON_NEG, OPPOSITE = range(5)


def cosines(images, rows) -> np.ndarray:
    return unit(images) @ unit(rows).T


# --- MCM, MaxLogit, Energy --------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.001])
def test_mcm_is_the_max_softmax_of_cosine_over_t(temperature):
    """MCM: max_c softmax_c(cos / T) over the positives (T = 1 in the official code; at
    T = 0.001 the logits reach 1000 and the naive softmax overflows float32)."""
    s = cosines(IMAGES, POS) / temperature
    want = np.exp(np.max(log_softmax(s), axis=1))
    got = fit("mcm", texts(POS, "p"), params={"temperature": temperature}).score(IMAGES)
    # float32 cosines carry ~6e-8 of rounding; over T = 0.001 that is ~6e-5 in the logits
    np.testing.assert_allclose(got, want, rtol=temperature * 0.1, atol=1e-12)
    if temperature == 0.001:
        assert overflows_float32(s)
        # the duplicated positive splits the mass in two; opposite e_0, the two tie too
        assert got[ON_DUPLICATE] == pytest.approx(0.5, rel=1e-4)
        assert got[OPPOSITE] == pytest.approx(0.5, rel=1e-4)
        assert got[ON_POS] == pytest.approx(1.0, rel=1e-4)


def test_mcm_is_a_probability_at_tiny_t():
    """At T = 0.001 the logits reach 1000 (float32 spacing 6e-5): the max and the logsumexp
    must be rounded alike, or the 'probability' exceeds 1 (it was 1.0000186 here). The two
    cosines of a duplicated positive may still differ by one float32 ulp (the matrix product
    sums rows in different orders), 6e-5 in the logits, as in the official float32 code."""
    got = fit("mcm", texts(POS, "p"), params={"temperature": 0.001}).score(IMAGES)
    assert (got <= 1.0).all() and (got > 0).all()
    assert got[ON_POS] == 1.0 and got[ON_DUPLICATE] == pytest.approx(0.5, rel=1e-4)


def test_mcm_of_a_single_class_is_one():
    got = fit("mcm", texts(POS[:1], "p")).score(IMAGES)
    np.testing.assert_array_equal(got, np.ones(len(IMAGES)))
    tiny = fit("mcm", texts(POS[:1], "p"), params={"temperature": 0.001}).score(IMAGES)
    np.testing.assert_allclose(tiny, np.ones(len(IMAGES)), rtol=1e-4)


def test_maxlogit_is_the_largest_cosine():
    got = fit("maxlogit", texts(POS, "p")).score(IMAGES)
    np.testing.assert_allclose(got, cosines(IMAGES, POS).max(axis=1), rtol=1e-6, atol=1e-7)
    assert got[ON_POS] == pytest.approx(1.0) and got[ON_DUPLICATE] == pytest.approx(1.0)
    one = fit("maxlogit", texts(POS[:1], "p")).score(IMAGES)
    np.testing.assert_allclose(one, cosines(IMAGES, POS[:1])[:, 0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_energy_is_t_logsumexp_of_the_logits_over_t(temperature):
    """Energy (negated): T · logsumexp(logit_scale · cos / T); at T = 0.1 with logit scale 100
    the terms reach e^1000, beyond float64."""
    z = 100.0 * cosines(IMAGES, POS) / temperature
    want = temperature * lse(z)
    got = fit("energy", texts(POS, "p"), params={"temperature": temperature}).score(IMAGES)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    if temperature == 0.1:
        with np.errstate(over="ignore"):
            assert not np.isfinite(np.exp(z).sum(axis=1)).all()
        # on the duplicated positive: two equal terms, log 2 above the single one
        assert got[ON_DUPLICATE] == pytest.approx(100.0 + 0.1 * np.log(2), abs=1e-4)
    one = fit("energy", texts(POS[:1], "p"), params={"temperature": temperature}).score(IMAGES)
    np.testing.assert_allclose(one, 100.0 * cosines(IMAGES, POS[:1])[:, 0], rtol=1e-5, atol=1e-4)


# --- NegLabel: Eq. 1 and grouping ------------------------------------------------------------


def log_positive_share(s_pos: np.ndarray, s_neg: np.ndarray) -> np.ndarray:
    """log Σ_pos e^s / (Σ_pos e^s + Σ_neg e^s), the positives' softmax mass, in log space."""
    a, b = lse(s_pos), lse(s_neg)
    return a - np.logaddexp(a, b)


def test_eq1_is_the_positive_share_of_the_softmax():
    """Eq. 1 at τ = 0.001: S rounds to 1 (ID) or overflows to 0 / NaN (OOD) in float64;
    log S must not, and the exact ties give their exact values."""
    tau = 0.001
    sp, sn = cosines(IMAGES, POS) / tau, cosines(IMAGES, NEG) / tau
    want = log_positive_share(sp, sn)
    got = fit("eq1", texts(POS, "p"), texts(NEG, "n"), params={"tau": tau}).score(IMAGES)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-3)
    assert np.isfinite(got).all() and overflows_float32(np.c_[sp, sn])
    assert got[POS_NEG_TIE] == pytest.approx(-np.log(2), abs=1e-6)  # e^707 on either side
    assert got[ON_NEG] == pytest.approx(np.log(3) - 1000, abs=1e-3)  # 3 × e^0 against e^1000


def official_grouped(s_pos, s_neg, permutation, groups) -> np.ndarray:
    """NegLabel's grouping as its official code does it: the last M mod G negatives dropped,
    the rest permuted into G groups of ⌊M/G⌋; the mean over groups of each group's positive
    share (in probabilities), returned as its log."""
    q = s_neg.shape[1] // groups
    kept = s_neg[:, : groups * q]
    assert sorted(permutation.tolist()) == list(range(groups * q))
    grouped = kept[:, permutation].reshape(len(s_neg), groups, q)
    per_group = np.stack([log_positive_share(s_pos, grouped[:, g]) for g in range(groups)], 1)
    return lse(per_group) - np.log(groups)


def grouped_world(num_negatives: int):
    neg = np.concatenate([NEG, RNG.normal(size=(num_negatives - len(NEG), D))])
    return texts(POS, "p"), texts(neg, "n"), neg


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_grouped_neglabel_is_the_official_grouping_when_g_divides_m(groups):
    """G = 1 is Eq. 1; G = M puts every negative in its own group."""
    tau, (pos, neg_texts, neg) = 0.001, grouped_world(8)
    det = fit("eq1_grouped", pos, neg_texts, params={"tau": tau, "groups": groups, "seed": 5})
    want = official_grouped(cosines(IMAGES, POS) / tau, cosines(IMAGES, neg) / tau,
                            det.state["permutation"], groups)  # fmt: skip
    np.testing.assert_allclose(det.score(IMAGES), want, rtol=1e-6, atol=1e-3)
    if groups == 1:
        eq1 = fit("eq1", pos, neg_texts, params={"tau": tau}).score(IMAGES)
        np.testing.assert_allclose(det.score(IMAGES), eq1, rtol=1e-9, atol=1e-9)


def test_grouped_neglabel_drops_the_remainder_like_the_official_code():
    """M = 10, G = 4: the official code (XueJiang16/NegLabel, ScalableClassifier.grouping)
    makes 4 groups of 2 and ignores the last 2 permuted negatives (``remainder: drop``); the
    default keeps them, in groups of 3, 3, 2, 2 (docs/methods.md, 'Grouping')."""
    tau, (pos, neg_texts, neg) = 0.001, grouped_world(10)
    params = {"tau": tau, "groups": 4, "seed": 5, "remainder": "drop"}
    det = fit("eq1_grouped", pos, neg_texts, params=params)
    want = official_grouped(cosines(IMAGES, POS) / tau, cosines(IMAGES, neg) / tau,
                            det.state["permutation"], 4)  # fmt: skip
    np.testing.assert_allclose(det.score(IMAGES), want, rtol=1e-6, atol=1e-3)
    spread = fit("eq1_grouped", pos, neg_texts, params={**params, "remainder": "spread"})
    assert spread.state["group_sizes"].tolist() == [3, 3, 2, 2]
    assert det.state["group_sizes"].tolist() == [2, 2, 2, 2]


# --- Mahalanobis and relative Mahalanobis -----------------------------------------------------


def official_mahalanobis(train, labels, x, relative=False) -> np.ndarray:
    """Lee et al.'s score on unit features: class means, one covariance of all class-centred
    training features (1/N, sklearn's EmpiricalCovariance in the official code), its
    pseudo-inverse; −min_c MD_c. Relative (Ren et al.): minus the distance to one Gaussian of
    all training features."""
    t, xu = unit(train), unit(x)
    classes = np.unique(labels)
    means = np.stack([t[labels == c].mean(0) for c in classes])
    centred = t - means[np.searchsorted(classes, labels)]
    precision = np.linalg.pinv(centred.T @ centred / len(t), hermitian=True)
    md = np.stack([np.einsum("nd,de,ne->n", xu - m, precision, xu - m) for m in means], 1)
    score = -md.min(axis=1)
    if relative:
        mu0 = t.mean(0)
        p0 = np.linalg.pinv((t - mu0).T @ (t - mu0) / len(t), hermitian=True)
        score += np.einsum("nd,de,ne->n", xu - mu0, p0, xu - mu0)
    return score


def mahalanobis_world(sizes, seed=1):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(len(sizes), D)))
    train = np.concatenate([centres[c] + 0.4 * rng.normal(size=(n, D))
                            for c, n in enumerate(sizes)])  # fmt: skip
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return 5.0 * train, labels, np.concatenate([train[:4], rng.normal(size=(10, D))])


@pytest.mark.parametrize("name", ["mahalanobis", "relative_mahalanobis"])
@pytest.mark.parametrize("sizes", [(3, 3, 3), (40, 40), (30,)], ids=["singular", "two", "one"])
def test_mahalanobis_is_the_official_score_with_balanced_classes(name, sizes):
    """Equal class sizes (where the shared covariance of the implementation and the official
    one coincide), including a covariance of rank 6 in 8 dimensions (3 classes of 3: only the
    pseudo-inverse exists) and a single class (relative Mahalanobis is then 0)."""
    train, labels, x = mahalanobis_world(sizes)
    det = fit(name, params={"class_source": "ground_truth"}, train=train, labels=labels)
    want = official_mahalanobis(train, labels, x, relative=name == "relative_mahalanobis")
    np.testing.assert_allclose(det.score(x), want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    if len(sizes) == 1 and name == "relative_mahalanobis":
        assert np.abs(det.score(x)).max() < 1e-8


@pytest.mark.parametrize("name", ["mahalanobis", "relative_mahalanobis"])
def test_mahalanobis_pools_the_covariance_like_the_official_code(name):
    """Unequal classes (24, 6, 2): ``covariance: pooled`` is the official shared covariance
    (Lee et al., sample_estimator; Ren et al.), Σ = (1/N) Σ_i (x_i − μ_{y_i})(...)ᵀ; the
    default, the mean of the per-class covariances (docs/methods.md), departs from it here by
    up to 24 in score (docs/methods.md gives the measured effect on AUROC)."""
    train, labels, x = mahalanobis_world((24, 6, 2))
    relative = name == "relative_mahalanobis"
    want = official_mahalanobis(train, labels, x, relative=relative)
    params = {"class_source": "ground_truth", "covariance": "pooled"}
    pooled = fit(name, params=params, train=train, labels=labels).score(x)
    np.testing.assert_allclose(pooled, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    params["covariance"] = "class_mean"
    class_mean = fit(name, params=params, train=train, labels=labels).score(x)
    assert np.abs(class_mean - want).max() > 1.0


# --- NegLabel's negatives: the 0.95-quantile ----------------------------------------------------


@pytest.mark.parametrize("num_classes", [21, 10], ids=["on-an-order-statistic", "interpolated"])
def test_neglabel_ranks_candidates_by_the_095_quantile(num_classes):
    """With 21 ID classes 0.95 · 20 = 19 lands exactly on an order statistic; with 10 the
    quantile interpolates linearly between the 9th and 10th (torch.quantile's default, as in
    the official code)."""
    rng = np.random.default_rng(num_classes)
    corpus = rng.normal(size=(num_classes + 60, 16))
    names = [f"w{i}" for i in range(len(corpus))]
    labels = mine_labels("neglabel", MiningInputs(names, corpus, class_names=names[:num_classes]),
                         {"num_negatives": 25})  # fmt: skip
    q = np.quantile(cosines(corpus[num_classes:], corpus[:num_classes]), 0.95, axis=1,
                    method="linear")  # fmt: skip
    order = np.lexsort((np.arange(len(q)), q))[:25]  # lowest first, ties in corpus order
    assert labels.negatives.tolist() == (num_classes + order).tolist()
    np.testing.assert_allclose(labels.neg_scores, q[order], atol=1e-6)


def test_neglabel_tie_at_the_cut_keeps_corpus_order():
    """Candidates of exactly equal quantile similarity straddle the K-th place: the earlier
    ones in the corpus are kept (the official torch.argsort leaves that order unspecified)."""
    gt = [e(1), e(0, 1), e(0, 0, 1), e(0, 0, 0, 1)]
    below = -e(1, 1, 1, 1)  # cosine −0.5 to every class: quantile −0.5
    tie = [e(0, 0, 0, 0, 1), e(0, 0, 0, 0, 0, 1), e(0, 0, 0, 0, 0, 0, 1), e(0, 0, 0, 0, 1, 1)]
    above = e(1, 0, 0, 0, 1)  # cosines (0.707, 0, 0, 0): quantile 0.85 · 0.707
    corpus = np.stack([*gt, tie[0], above, below, tie[1], tie[2], 2 * below, tie[3], above])
    names = [f"w{i}" for i in range(len(corpus))]
    labels = mine_labels("neglabel", MiningInputs(names, corpus, class_names=names[:4]),
                         {"num_negatives": 4})  # fmt: skip
    # the two at −0.5 (rows 6, 9), then the first two of the four exact zeros (rows 4, 7)
    assert labels.negatives.tolist() == [6, 9, 4, 7]
    np.testing.assert_allclose(labels.neg_scores, [-0.5, -0.5, 0.0, 0.0], atol=1e-7)
    everything = mine_labels("neglabel", MiningInputs(names, corpus, class_names=names[:4]),
                             {"num_negatives": 8})  # fmt: skip
    np.testing.assert_allclose(everything.neg_scores[-2:], [0.85 / np.sqrt(2)] * 2, atol=1e-6)


# --- PosMine and ClusterMine votes ----------------------------------------------------------


def test_posmine_keeps_names_with_at_least_m_votes():
    corpus = RNG.normal(size=(7, D))
    names = [f"w{i}" for i in range(7)]
    top1 = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 4, 4, 4, 5])
    votes = Counter(top1.tolist())
    for min_votes in (1, 3, 5):
        labels = mine_labels("posmine", MiningInputs(names, corpus, top1=top1),
                             {"min_votes": min_votes})  # fmt: skip
        want = sorted(w for w, n in votes.items() if n >= min_votes)  # exactly M counts
        assert labels.positives.tolist() == want
        assert labels.pos_votes.tolist() == [votes[w] for w in want]
        np.testing.assert_allclose(labels.pos_scores, [votes[w] / len(top1) for w in want])
    # A fixed number of positives: most votes first, equal votes (0 and 4: 3 each) by index.
    fixed = mine_labels("posmine", MiningInputs(names, corpus, top1=top1), {"num_positives": 2})
    assert fixed.positives.tolist() == [0, 2]
    single = mine_labels("posmine", MiningInputs(names, corpus, top1=np.array([3])),
                         {"min_votes": 1})  # fmt: skip
    assert single.positives.tolist() == [3] and single.pos_scores.tolist() == [1.0]


def test_posmine_zero_shot_ties_go_to_the_first_name():
    corpus = np.stack([e(1), e(0, 1), e(0, 1), e(0, 0, 1)])  # names 1 and 2: the same text
    images = np.stack([e(0, 3), e(0, 1, 0.1), e(1)])
    labels = mine_labels("posmine", MiningInputs([f"w{i}" for i in range(4)], corpus,
                                                 image_emb=images), {"min_votes": 1})  # fmt: skip
    assert labels.positives.tolist() == [0, 1] and labels.pos_votes.tolist() == [1, 2]


def clustermine_by_hand(assignments, top1, corpus_size):
    """Each non-empty cluster votes for its most frequent zero-shot label (ties: the lowest
    corpus index); positives are the voted names, their votes the clusters that voted for
    them, their score the mean majority share of those clusters."""
    shares: dict[int, list[float]] = {}
    ties = 0
    for cluster in sorted(set(assignments.tolist()) - {-1}):
        counts = Counter(top1[assignments == cluster].tolist())
        best = max(counts.values())
        winners = sorted(w for w, n in counts.items() if n == best)
        ties += len(winners) > 1
        shares.setdefault(winners[0], []).append(best / sum(counts.values()))
    pos = sorted(shares)
    return pos, [len(shares[w]) for w in pos], [float(np.mean(shares[w])) for w in pos], ties


def test_clustermine_votes_are_each_clusters_majority_label():
    rng = np.random.default_rng(7)
    corpus = rng.normal(size=(12, D))
    names = [f"w{i}" for i in range(12)]
    tied = 0
    for _ in range(25):
        n = int(rng.integers(5, 40))
        assignments = rng.integers(-1, 6, size=n)  # -1: unassigned; some ids empty
        if not (assignments >= 0).any():
            continue
        top1 = rng.choice([1, 4, 5, 9], size=n)  # few labels: ties within clusters are common
        labels = mine_labels("clustermine", MiningInputs(names, corpus, top1=top1,
                                                         assignments=assignments))  # fmt: skip
        pos, votes, scores, ties = clustermine_by_hand(assignments, top1, len(names))
        assert labels.positives.tolist() == pos and labels.pos_votes.tolist() == votes
        np.testing.assert_allclose(labels.pos_scores, scores, rtol=1e-12)
        tied += ties
    assert tied >= 10  # the tie rule was exercised, not only majorities of one


# --- CLIPScope --------------------------------------------------------------------------------


def clipscope_by_hand(images, pos, neg, scale, adaptive):
    """The official per-image loop: p = softmax(scale · cos) over the ID labels, ŷ its argmax
    (the first of equal ones), P_ID = the ID labels' mass of the softmax over ID and OOD
    labels, S = p(ŷ) · P_ID / π(ŷ), π the histogram (ones at first) over its total, ŷ counted
    after the image is scored. Log space, float64."""
    lp, ln = scale * cosines(images, pos), scale * cosines(images, neg)
    counts, out = np.ones(len(pos)), []
    for i in range(len(images)):
        y = int(np.argmax(lp[i]))
        log_p = log_softmax(lp[i])[y]
        log_p_id = lse(lp[i]) - lse(np.r_[lp[i], ln[i]])
        prior = counts[y] / counts.sum() if adaptive else 1.0 / len(pos)
        out.append(log_p + log_p_id - np.log(prior))
        counts[y] += adaptive
    return np.array(out), counts


@pytest.mark.parametrize("name", ["clipscope", "clipscope_static"])
def test_clipscope_is_the_official_per_image_loop(name):
    """At logit scale 1000 the ID mass of an image on a negative is e^-1000: 0 in float32 in
    the official code, finite here. The duplicated ID text ties: the first one is predicted
    and counted."""
    stream = np.concatenate([IMAGES, IMAGES[[ON_DUPLICATE, ON_DUPLICATE, ON_POS]]])
    want, counts = clipscope_by_hand(stream, POS, NEG, 1000.0, name == "clipscope")
    det = fit(name, texts(POS, "p"), texts(NEG, "n"), logit_scale=1000.0)
    got = np.r_[det.score(stream[:4]), det.score(stream[4:])]  # the histogram carries over
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-3)
    assert np.isfinite(got).all() and got[ON_NEG] < -900
    if name == "clipscope":
        np.testing.assert_array_equal(det.state["counts"], counts)
        assert counts[1] >= 4 and counts[2] == 1  # ties went to the first of the duplicates


@pytest.mark.parametrize("rank", [1, 3, 4, 9])
def test_clipscope_mining_ranks_by_the_rank_th_largest_cosine(rank, caplog):
    """v_w = the rank-th largest cosine of w to the ID texts (the official mining.py's
    kthvalue); the lowest and highest v_w are kept, equal v_w in corpus order. A rank above
    the number of ID classes uses the smallest cosine (and says so)."""
    gt = [e(1), e(0, 1), e(0, 0, 1), e(0, 0, 0, 1)]
    rng = np.random.default_rng(rank)
    candidates = np.concatenate([np.stack([e(0, 0, 0, 0, 1), e(0, 0, 0, 0, 0, 1)]),
                                 rng.normal(size=(14, D)), np.stack([e(0, 0, 0, 0, 0, 0, 1)])])
    corpus = np.concatenate([np.stack(gt), candidates])
    names = [f"w{i}" for i in range(len(corpus))]
    labels = mine_labels("clipscope", MiningInputs(names, corpus, class_names=names[:4]),
                         {"rank": rank, "num_low": 3, "num_high": 15})  # fmt: skip
    k = min(rank, 4)
    v = np.sort(cosines(candidates, np.stack(gt)), axis=1)[:, -k]
    order = np.lexsort((np.arange(len(v)), v))
    keep = np.r_[order[:3], order[max(3, len(order) - 15):]]  # no name twice
    assert labels.negatives.tolist() == (4 + keep).tolist()
    np.testing.assert_allclose(labels.neg_scores, v[keep], atol=1e-6)
    assert (rank > 4) == ("more than the 4 ID classes" in caplog.text)


# --- AdaNeg -----------------------------------------------------------------------------------


def test_adaneg_without_writes_is_one_plus_lambda_times_grouped_neglabel():
    """With thresholds S_v can never cross (thres 0.5, gap 1: write above 1 or below 0) the
    memory holds only the texts, the adaptive proxies are the texts and S = (1 + λ)·S_v, S_v
    the official grouped NegLabel probability on logit_scale · cos: M = 10 negatives in G = 4
    groups of 2, the last 2 dropped (replacing them changes nothing). Logit scale 1000:
    e^1000 terms."""
    neg = np.concatenate([NEG, RNG.normal(size=(6, D)), e(0, 0, 0, 0, 0, 0, 0, 1)[None]])
    images = np.concatenate([IMAGES, neg[-1:], 3 * neg[-1:]])
    params = {"groups": 4, "thres": 0.5, "gap": 1.0, "memory": 3, "lam": 0.25,
              "stream_batch_size": 5, "seed": 2}  # fmt: skip
    det = fit("adaneg", texts(POS, "p"), texts(neg, "n"), logit_scale=1000.0, params=params)
    s_v = np.exp(official_grouped(1000.0 * cosines(images, POS), 1000.0 * cosines(images, neg),
                                  det.state["permutation"], 4))  # fmt: skip
    np.testing.assert_allclose(det.score(images), 1.25 * s_v, rtol=1e-5, atol=1e-6)
    assert det.state["pointer"].tolist() == [1] * 13  # nothing was written
    other = np.concatenate([neg[:-2], -neg[-2:]])
    again = fit("adaneg", texts(POS, "p"), texts(other, "n"), logit_scale=1000.0, params=params)
    np.testing.assert_array_equal(again.score(images), det.score(images))


# --- GradNorm filtering -----------------------------------------------------------------------


def gradnorm_by_hand(texts_, prototypes, temperature):
    """G(n) = ‖softmax(z) − onehot(argmax z)‖₂ · ‖t̂_n‖₂ with z = ⟨w_k, t̂_n⟩ / T (‖t̂‖ = 1),
    argmax the first of equal ones; in log space."""
    z = cosines(texts_, prototypes) / temperature
    pred = np.argmax(z, axis=1)
    p = np.exp(log_softmax(z))
    p[np.arange(len(z)), pred] -= 1.0
    return pred, np.linalg.norm(p, axis=1)


@pytest.mark.parametrize("temperature", [0.5, 0.001])
def test_gradnorm_is_the_norm_of_the_cross_entropy_gradient(temperature):
    prototypes = np.stack([e(1), e(0, 1), e(0, 0, 1)])
    names = np.concatenate([np.stack([5 * e(1), e(1, 1), e(0, 1, 0.2), -e(1)]),
                            RNG.normal(size=(5, D))])  # fmt: skip
    pred, grad = gradient_norms(names, prototypes, temperature, budget_bytes=128, device="cpu")
    want_pred, want = gradnorm_by_hand(names, prototypes, temperature)
    assert pred.tolist() == want_pred.tolist()
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)
    if temperature == 0.001:
        assert overflows_float32(cosines(names, prototypes) / temperature)
        assert grad[0] == pytest.approx(0.0, abs=1e-12)  # on a prototype: p is one-hot
        assert pred[1] == 0 and grad[1] == pytest.approx(np.sqrt(0.5))  # between two: ½, ½
        assert pred[3] == 1 and grad[3] == pytest.approx(np.sqrt(0.5))  # ties of -e_0


def test_gradnorm_filtering_keeps_the_top_k_smallest_per_cluster():
    """End to end: prototypes are the normalised means of the clusters' unit images; each
    cluster keeps its top_k names of smallest G (equal G: the lower row)."""
    images = np.stack([e(2), e(1, 0.1), e(0, 3), e(0, 1, 0.1), e(0, 0, 1), e(0, 0, 2)])
    assignments = np.array([0, 0, 2, 2, 1, 1])
    corpus = np.stack([e(1, 0.05), e(0, 1), 2 * e(0, 1), e(0, 0, 1), e(1, 1), e(0, 0, 1, 0.3),
                       e(0, 0.1, 1)])  # fmt: skip
    names = [f"w{i}" for i in range(len(corpus))]
    labels = mine_labels("gradnorm", MiningInputs(names, corpus, image_emb=images,
                                                  assignments=assignments),
                         {"temperature": 0.02, "top_k": 2})  # fmt: skip
    x = unit(images)
    prototypes = unit(np.stack([x[assignments == c].mean(0) for c in range(3)]))
    pred, grad = gradnorm_by_hand(corpus, prototypes, 0.02)
    keep = sorted(r for c in range(3)
                  for r in sorted(np.flatnonzero(pred == c), key=lambda r: (grad[r], r))[:2])
    assert labels.positives.tolist() == keep
    np.testing.assert_allclose(labels.pos_scores, grad[keep], rtol=1e-5, atol=1e-9)
    assert grad[1] == grad[2] and {1, 2} <= set(keep)  # the same direction: an exact tie
