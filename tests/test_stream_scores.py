"""Test-time-adaptive scores (CLIPScope, AdaNeg) on small hand-made streams, and the stream
machinery: row order, seeded reproducibility, reset per pair."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from clustermine.detectors import get_detector, load_detector
from clustermine.detectors.clipscope import running_prior
from clustermine.h5io import TextEmbeddings
from clustermine.mining import MiningInputs, mine_labels
from clustermine.streams import score_stream


pytestmark = pytest.mark.usefixtures("one_thread")


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def texts(rng, n, d=8, name="t"):
    return TextEmbeddings(unit(rng.normal(size=(n, d))).astype(np.float32),
                          [f"{name}{i}" for i in range(n)])  # fmt: skip


# --- CLIPScope ----------------------------------------------------------------------------


def test_clipscope_mining_keeps_the_extremes_of_the_rank_th_cosine():
    rng = np.random.default_rng(0)
    corpus = unit(rng.normal(size=(30, 6))).astype(np.float32)
    names = [f"w{i}" for i in range(30)]
    inputs = MiningInputs(names, corpus, class_names=["w0", "w1", "w2", "w3"], device="cpu")
    labels = mine_labels("clipscope", inputs, {"rank": 2, "num_low": 3, "num_high": 2})
    cand = np.arange(4, 30)
    v = np.sort(corpus[cand] @ corpus[:4].T, axis=1)[:, -2]  # the 2nd largest cosine
    order = np.argsort(v, kind="stable")
    assert labels.negatives.tolist() == cand[np.r_[order[:3], order[-2:]]].tolist()
    np.testing.assert_allclose(labels.neg_scores, v[np.r_[order[:3], order[-2:]]], rtol=1e-6)
    assert labels.pos_names == ["w0", "w1", "w2", "w3"]


def test_running_prior_counts_earlier_images_in_order():
    counts = np.ones(3)
    # Stream of predictions 2, 2, 0, 2: π = 1/3, 2/4, 1/5, 3/6.
    np.testing.assert_allclose(running_prior(counts, np.array([2, 2, 0, 2])),
                               [1 / 3, 2 / 4, 1 / 5, 3 / 6])  # fmt: skip


def clipscope_by_hand(x, pos, neg, scale, adaptive=True):
    x = unit(np.asarray(x, np.float64))
    lp, ln = scale * x @ pos.T, scale * x @ neg.T
    counts, out = np.ones(len(pos)), []
    for i in range(len(x)):
        p_id = softmax(lp[i])
        y = int(p_id.argmax())
        p_all = softmax(np.r_[lp[i], ln[i]])[: len(pos)].sum()
        prior = counts[y] / counts.sum() if adaptive else 1 / len(pos)
        out.append(np.log(p_id[y] * p_all / prior))
        counts[y] += 1  # after the image is scored
    return np.array(out)


@pytest.mark.parametrize("name", ["clipscope", "clipscope_static"])
def test_clipscope_matches_the_per_image_loop(name):
    rng = np.random.default_rng(1)
    pos, neg = texts(rng, 4, name="p"), texts(rng, 9, name="n")
    x = rng.normal(size=(13, 8))
    det = get_detector(name).fit(None, pos, neg, 20.0, device="cpu", budget_bytes=512)
    want = clipscope_by_hand(x, pos.embeddings, neg.embeddings, 20.0, name == "clipscope")
    # Scored in two calls: the histogram carries over between them.
    got = np.r_[det.score(x[:5]), det.score(x[5:])]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert det.stateful is (name == "clipscope")
    if name == "clipscope":
        assert det.state["counts"].sum() == 4 + 13
        det.reset()
        assert det.state["counts"].tolist() == [1, 1, 1, 1]


# --- AdaNeg -------------------------------------------------------------------------------


class AdaNegByHand:
    """The official update rules written out image by image, in NumPy float64."""

    def __init__(self, pos, neg, perm, p, scale):
        self.c, self.scale, self.p, self.perm = len(pos), scale, p, perm
        texts_ = np.concatenate([pos, neg]).astype(np.float64)
        self.mem = np.zeros((len(texts_), p["memory"] + 1, texts_.shape[1]))
        self.mem[:, 0] = texts_
        self.ptr = np.ones(len(texts_), dtype=int)
        self.ent = np.zeros((len(texts_), p["memory"] + 1))

    def grouped(self, logits):
        g, q = self.p["groups"], len(self.perm) // self.p["groups"]
        neg = logits[:, self.c :][:, self.perm].reshape(len(logits), g, q)
        lse_pos = logsumexp(logits[:, : self.c], axis=1, keepdims=True)
        return np.exp(lse_pos - np.logaddexp(lse_pos, logsumexp(neg, axis=2))).mean(1)

    def write(self, proxy, x, probs):
        ent = -(probs * np.log(probs + 1e-8)).sum()
        if self.ptr[proxy] == self.p["memory"]:
            if (ent < self.ent[proxy]).any():
                slot = len(self.ent[proxy]) - 1 - np.argmax(self.ent[proxy][::-1])
                self.mem[proxy, slot], self.ent[proxy, slot] = x, ent
        else:
            self.mem[proxy, self.ptr[proxy]], self.ent[proxy, self.ptr[proxy]] = x, ent
            self.ptr[proxy] += 1

    def batch(self, x):
        x = unit(np.asarray(x, np.float64))
        logits = self.scale * x @ self.mem[:, 0].T
        s_v = self.grouped(logits)
        hi = self.p["thres"] + self.p["gap"] * (1 - self.p["thres"])
        lo = self.p["thres"] - self.p["gap"] * self.p["thres"]
        for i in np.flatnonzero(s_v > hi):
            self.write(int(logits[i, : self.c].argmax()), x[i], softmax(logits[i, : self.c]))
        for i in np.flatnonzero(s_v < lo):
            j = int(logits[i, self.c :].argmax())
            self.write(self.c + j, x[i], softmax(logits[i, self.c :]))
        sims = np.einsum("bd,pld->bpl", x, self.mem)
        w = np.exp(-self.p["beta"] * (1 - sims))
        proxies = np.einsum("bpl,pld->bpd", w, self.mem)
        proxies /= np.linalg.norm(proxies, axis=-1, keepdims=True)
        ada = self.scale * np.einsum("bd,bpd->bp", x, proxies)
        return self.grouped(ada) + self.p["lam"] * s_v


ADANEG = {"groups": 2, "thres": 0.5, "gap": 0.2, "memory": 3, "lam": 0.1, "beta": 5.0,
          "samada": True, "stream_batch_size": 4, "stream_seed": 0, "seed": 3}  # fmt: skip


def adaneg_world(seed=2):
    rng = np.random.default_rng(seed)
    pos, neg = texts(rng, 3, name="p"), texts(rng, 8, name="n")
    # Images near the ID texts and near the negatives, so that both memories fill and the
    # replacement rule is exercised (3 slots, more than 3 images per proxy).
    near = lambda t, n: t[rng.integers(len(t), size=n)] + 0.15 * rng.normal(size=(n, 8))  # noqa: E731
    x = np.concatenate([near(pos.embeddings, 14), near(neg.embeddings, 10)])
    return pos, neg, rng.permutation(x)


def test_adaneg_matches_the_official_rules_batch_by_batch():
    pos, neg, x = adaneg_world()
    det = get_detector("adaneg").fit(None, pos, neg, 30.0, ADANEG, device="cpu")
    ref = AdaNegByHand(pos.embeddings, neg.embeddings, det.state["permutation"], ADANEG, 30.0)
    want = np.concatenate([ref.batch(x[b : b + 4]) for b in range(0, len(x), 4)])
    np.testing.assert_allclose(det.score(x), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(det.state["pointer"], ref.ptr)
    np.testing.assert_allclose(det.state["entropy"], ref.ent, rtol=1e-4, atol=1e-8)
    det.sync_state()
    np.testing.assert_allclose(det.state["memory"], ref.mem, rtol=1e-5, atol=1e-6)
    assert (ref.ptr == ADANEG["memory"]).any()  # some memory filled up and was replaced into
    # The write pointer starts at 1 and the memory is "full" at L: appending never reaches
    # slot L (only a replacement can, where it holds the largest entropy).
    assert det.state["pointer"].max() == ADANEG["memory"]


def test_adaneg_mixing_and_sample_adaptive_proxies():
    pos, neg, x = adaneg_world(seed=4)

    def fit(**p):
        return get_detector("adaneg").fit(None, pos, neg, 30.0, {**ADANEG, **p}, device="cpu")

    base, no_lambda = fit().score(x), fit(lam=0.0).score(x)
    s_v = (base - no_lambda) / 0.1  # S = S_ada + λ S_v: the difference is λ S_v
    assert ((s_v >= 0) & (s_v <= 1 + 1e-9)).all() and s_v.std() > 0
    # Without sample-adaptive weights the proxies are the normalised slot sums.
    assert not np.allclose(fit(samada=False).score(x), base)


def test_detector_files_keep_the_fitted_state_and_scoring_continues(tmp_path):
    pos, neg, x = adaneg_world()
    det = get_detector("adaneg").fit(None, pos, neg, 30.0, ADANEG, device="cpu")
    det.save(tmp_path / "a.h5")
    first = det.score(x[:8])
    back = load_detector(tmp_path / "a.h5", device="cpu")
    np.testing.assert_allclose(back.score(x[:8]), first, rtol=1e-6)
    np.testing.assert_allclose(back.score(x[8:]), det.score(x[8:]), rtol=1e-6)


# --- streams ------------------------------------------------------------------------------


def test_streams_are_seeded_in_row_order_and_reset_per_pair():
    rng = np.random.default_rng(5)
    pos, neg = texts(rng, 4, name="p"), texts(rng, 9, name="n")
    id_x, ood_x = rng.normal(size=(20, 8)), rng.normal(size=(15, 8))
    det = get_detector("clipscope").fit(None, pos, neg, 20.0, device="cpu")
    a = score_stream(det, id_x, ood_x, seed=7)
    b = score_stream(det, id_x, ood_x, seed=7)  # state reset: the same again
    np.testing.assert_array_equal(a.id_scores, b.id_scores)
    np.testing.assert_array_equal(a.ood_scores, b.ood_scores)
    c = score_stream(det, id_x, ood_x, seed=8)
    assert not np.array_equal(a.id_scores, c.id_scores)
    # Row order: the stream scored by hand in its own order, then put back.
    x = np.concatenate([id_x, ood_x])
    want = np.empty(len(x))
    want[a.order] = clipscope_by_hand(x[a.order], pos.embeddings, neg.embeddings, 20.0)
    np.testing.assert_allclose(np.r_[a.id_scores, a.ood_scores], want, rtol=1e-5, atol=1e-5)
    # A static detector gives the same scores in any order.
    static = get_detector("clipscope_static").fit(None, pos, neg, 20.0, device="cpu")
    s = score_stream(static, id_x, ood_x, seed=7)
    np.testing.assert_allclose(s.id_scores, static.score(id_x), rtol=1e-12)
