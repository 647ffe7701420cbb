"""OOD scores against direct NumPy computations; detector files round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from clustermine import catalog
from clustermine.detectors import DetectorConfigError, get_detector, load_detector
from clustermine.h5io import TextEmbeddings


pytestmark = pytest.mark.usefixtures("one_thread")


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    d = 24
    pos = unit(rng.normal(size=(12, d)))
    neg = unit(rng.normal(size=(250, d)))
    # ID images near positives, OOD near negatives.
    id_x = pos[rng.integers(0, 12, 40)] + 0.6 * rng.normal(size=(40, d)) / np.sqrt(d)
    ood_x = neg[rng.integers(0, 250, 40)] + 0.6 * rng.normal(size=(40, d)) / np.sqrt(d)
    images = np.concatenate([id_x, ood_x]).astype(np.float32) * 7.0  # unnormalised
    train = pos[rng.integers(0, 12, 600)] + 0.5 * rng.normal(size=(600, d)) / np.sqrt(d)
    return {
        "pos": TextEmbeddings(pos.astype(np.float32), [f"p{i}" for i in range(12)]),
        "neg": TextEmbeddings(neg.astype(np.float32), [f"n{i}" for i in range(250)]),
        "images": images,
        "train": train.astype(np.float32),
        "train_labels": rng.integers(0, 5, 600),
    }


def cosines(images, texts):
    return unit(images.astype(np.float32)) @ unit(texts.embeddings).T


def direct_eq1(images, pos, neg, tau):
    """S itself in float64: fine where exp(s/τ) does not overflow."""
    p = np.exp(cosines(images, pos) / tau).sum(1)
    n = np.exp(cosines(images, neg) / tau).sum(1)
    return p / (p + n)


@pytest.mark.parametrize("budget", [512, 10**9])
def test_eq1_equals_float64_direct(setup, budget):
    tau = 0.05
    det = get_detector("eq1").fit(
        None, setup["pos"], setup["neg"], 100.0, {"tau": tau}, device="cpu", budget_bytes=budget
    )
    got = det.score(setup["images"])
    want = np.log(direct_eq1(setup["images"], setup["pos"], setup["neg"], tau))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert det.tau == tau


def test_eq1_tau_from_logit_scale(setup):
    det = get_detector("eq1").fit(None, setup["pos"], setup["neg"], 100.0, {"tau_factor": 0.1})
    assert det.tau == pytest.approx(0.001)
    assert det.describe()["tau"] == pytest.approx(0.001)


def test_eq1_at_tiny_tau_is_finite_ordered_and_chunk_independent(setup):
    """At τ = 0.001 exp(s/τ) overflows even float64 and S rounds to 1; log S must not."""
    images = setup["images"]
    fit = get_detector("eq1").fit
    small = fit(None, setup["pos"], setup["neg"], 100.0, device="cpu", budget_bytes=300)
    large = fit(None, setup["pos"], setup["neg"], 100.0, device="cpu", budget_bytes=10**9)
    a, b = small.score(images), large.score(images)
    assert np.isfinite(a).all() and (a <= 0).all()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-30)
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(direct_eq1(images, setup["pos"], setup["neg"], 0.001)).all()
    # Reference in float64 log space from the same cosines.
    sp, sn = cosines(images, setup["pos"]) / 0.001, cosines(images, setup["neg"]) / 0.001
    ref = -np.logaddexp(0.0, logsumexp(sn, axis=1) - logsumexp(sp, axis=1))
    # float32 cosines / τ carry ~1e-4 absolute error, i.e. that relative error in -log S.
    np.testing.assert_allclose(a, ref, rtol=1e-3)
    assert (np.argsort(a) == np.argsort(ref)).all()
    # ID images (first half) are near positives: S rounds to 1, log S stays distinct.
    assert len(np.unique(a[:40])) == 40
    assert (np.exp(a[:40]) == 1.0).any()


def test_eq1_grouped_is_mean_of_group_scores(setup):
    tau, groups = 0.05, 7
    det = get_detector("eq1_grouped").fit(
        None,
        setup["pos"],
        setup["neg"],
        100.0,
        {"tau": tau, "groups": groups, "seed": 3},
        budget_bytes=20000,
    )
    perm = np.random.default_rng(3).permutation(250)
    parts = np.array_split(perm, groups)
    s = []
    for g in parts:
        sub = TextEmbeddings(setup["neg"].embeddings[g], [setup["neg"].names[i] for i in g])
        s.append(direct_eq1(setup["images"], setup["pos"], sub, tau))
    want = np.log(np.mean(s, axis=0))
    np.testing.assert_allclose(det.score(setup["images"]), want, rtol=1e-5)
    with pytest.raises(DetectorConfigError, match="groups"):
        get_detector("eq1_grouped").fit(None, setup["pos"], setup["neg"], 100.0, {"groups": 0})


def test_mcm_maxlogit_energy(setup):
    x = setup["images"]
    s = cosines(x, setup["pos"])
    fit = lambda name, **p: get_detector(name).fit(  # noqa: E731
        None, setup["pos"], None, 50.0, p, budget_bytes=1000
    )
    sm = np.exp(s - logsumexp(s, axis=1, keepdims=True))
    np.testing.assert_allclose(fit("mcm").score(x), sm.max(1), rtol=1e-6)
    s2 = s / 0.5
    sm2 = np.exp(s2 - logsumexp(s2, axis=1, keepdims=True))
    np.testing.assert_allclose(fit("mcm", temperature=0.5).score(x), sm2.max(1), rtol=1e-6)
    np.testing.assert_allclose(fit("maxlogit").score(x), s.max(1), rtol=1e-6)
    np.testing.assert_allclose(fit("energy").score(x), logsumexp(50.0 * s, axis=1), rtol=1e-6)


def direct_mahalanobis(train, y, x):
    train, x = unit(train), unit(x)
    classes = np.unique(y)
    means = np.stack([train[y == c].mean(0) for c in classes])
    covs = [np.cov(train[y == c].T, bias=True) for c in classes]
    prec = np.linalg.pinv(np.mean(covs, axis=0))
    md = np.stack([np.einsum("nd,de,ne->n", x - m, prec, x - m) for m in means], axis=1)
    return md.min(1), train


@pytest.mark.parametrize("budget", [4096, 10**9])
def test_mahalanobis_equals_numpy(setup, budget):
    train, x = setup["train"], setup["images"]
    y_zs = cosines(train, setup["pos"]).argmax(1)
    det = get_detector("mahalanobis").fit(
        train, setup["pos"], None, 100.0, budget_bytes=budget, device="cpu"
    )
    md, _ = direct_mahalanobis(train, y_zs, x)
    np.testing.assert_allclose(det.score(x), -md, rtol=1e-8)
    det_gt = get_detector("mahalanobis").fit(
        train, None, None, 100.0, {"class_source": "ground_truth"}, setup["train_labels"]
    )
    md_gt, _ = direct_mahalanobis(train, setup["train_labels"], x)
    np.testing.assert_allclose(det_gt.score(x), -md_gt, rtol=1e-8)


def test_relative_mahalanobis_equals_numpy(setup):
    train, x = setup["train"], setup["images"]
    y = setup["train_labels"]
    det = get_detector("relative_mahalanobis").fit(
        train, None, None, 100.0, {"class_source": "ground_truth", "inverse": "solve"}, y
    )
    md, tr = direct_mahalanobis(train, y, x)
    mu0, prec0 = tr.mean(0), np.linalg.inv(np.cov(tr.T, bias=True))
    xu = unit(x)
    md0 = np.einsum("nd,de,ne->n", xu - mu0, prec0, xu - mu0)
    np.testing.assert_allclose(det.score(x), -(md - md0), rtol=1e-6)


def test_mahalanobis_ground_truth_needs_labels(setup):
    with pytest.raises(DetectorConfigError, match="unknown labels"):
        get_detector("mahalanobis").fit(
            setup["train"],
            None,
            None,
            100.0,
            {"class_source": "ground_truth"},
            np.full(600, -1),
        )


def test_plp_learns_pseudo_labels_and_is_seeded(setup):
    fit = get_detector("plp").fit
    args = (
        setup["train"],
        setup["pos"],
        None,
        100.0,
        {"epochs": 20, "batch_size": 128, "base_lr": 0.1},
    )
    a, b = fit(*args, device="cpu"), fit(*args, device="cpu")
    x = setup["images"]
    np.testing.assert_array_equal(a.score(x), b.score(x))
    assert a.fit_stats["train_pseudo_accuracy"] > 0.8
    s = a.score(x)
    assert ((s > 0) & (s <= 1)).all()
    assert s[:40].mean() > s[40:].mean()  # ID images are confidently classified


@pytest.mark.parametrize("name", sorted(catalog.SCORES))
def test_save_load_round_trip(tmp_path, setup, name):
    params = {"plp": {"epochs": 2}, "eq1_grouped": {"groups": 5}}.get(name, {})
    det = get_detector(name).fit(
        setup["train"],
        setup["pos"],
        setup["neg"],
        80.0,
        params,
        setup["train_labels"],
        meta={"model_arch": "tiny", "model_pretrained": "none"},
        device="cpu",
        budget_bytes=5000,
    )
    path = tmp_path / f"{name}.h5"
    det.save(path)
    back = load_detector(path, device="cpu", budget_bytes=5000)
    assert type(back) is type(det)
    assert back.params == det.params and back.tau == det.tau
    assert back.text_pos.names == det.text_pos.names
    assert back.meta["model_arch"] == "tiny"
    x = setup["images"]
    more = {}  # what scores reading more than the embedding read: stand-ins of the right shape
    if det.plugin().has("local_features"):
        more["local"] = np.stack([x, x[::-1]], axis=1)
    if det.plugin().has("views"):
        more["views"] = [x[::-1] for _ in det.views]
    np.testing.assert_array_equal(back.score(x, **more), det.score(x, **more))


def test_configuration_errors(setup):
    with pytest.raises(DetectorConfigError, match="known scores"):
        get_detector("odin")
    with pytest.raises(DetectorConfigError, match="no parameter"):
        get_detector("eq1").fit(None, setup["pos"], setup["neg"], 100.0, {"temp": 1})
    with pytest.raises(DetectorConfigError, match="needs negative labels"):
        get_detector("eq1").fit(None, setup["pos"], None, 100.0)
    with pytest.raises(DetectorConfigError, match="needs positive labels"):
        get_detector("mcm").fit(None, None, None, 100.0)
    det = get_detector("maxlogit").fit(None, setup["pos"], None, 100.0)
    with pytest.raises(ValueError, match="different models"):
        det.score(np.ones((2, 5), np.float32))
