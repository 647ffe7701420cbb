"""OODD (``oodd``, ``oodd_mcm``) against the official rules re-derived here in plain numpy:
per batch, every image enters a priority queue that keeps the Q features of lowest s_ID (one
image after the other, the highest leaving), then S = s_ID − the K2-th largest cosine to the
queue. Edge cases: ties in the queue, a queue not yet full, K2 above the queue's fill, the
reset between (ID test set, benchmark) pairs and the seeded stream order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax

from clustermine.detectors import DetectorConfigError, get_detector, load_detector
from clustermine.detectors.files import score_files
from clustermine.detectors.oodd import informative_inliers
from clustermine.h5io import ImageEmbeddings, TextEmbeddings, write_image_embeddings
from clustermine.score_files import read_pair
from clustermine.streams import score_stream, stream_order

pytestmark = pytest.mark.usefixtures("one_thread")

SCALE = 30.0
MODEL = {"model_arch": "tiny", "model_pretrained": "none-test"}


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def texts(rows):
    rows = unit(rows).astype(np.float32)
    return TextEmbeddings(rows, [f"t{i}" for i in range(len(rows))])


# --- the official rules, by hand -------------------------------------------------------------


def inliers_by_hand(train, pos, fraction):
    """Zero-shot class and max softmax; per class by confidence, highest first; classes
    interleaved rank by rank (the official double loop); the first ⌊α N⌋. The max softmax
    is 1.0 in float64 for most of these images: they are ordered by 1/p − 1 = Σ_{j≠ŷ}
    e^{l_j − l_ŷ} (ascending) instead, which is not rounded away."""
    logits = SCALE * unit(train) @ unit(pos).T
    cls = logits.argmax(axis=1)
    rest = np.exp(logits - logits.max(axis=1, keepdims=True))
    rest[np.arange(len(train)), cls] = 0.0
    msp = -rest.sum(axis=1)  # the order of the max softmax
    per_class = [sorted(np.flatnonzero(cls == c), key=lambda i: (-msp[i], i))
                 for c in np.unique(cls)]  # fmt: skip
    order = [rows[r] for r in range(max(map(len, per_class)))
             for rows in per_class if r < len(rows)]  # fmt: skip
    return sorted(order[: max(1, int(fraction * len(train)))])


def kth_largest(sims, k):
    return np.sort(sims, axis=1)[:, -k]


def oodd_by_hand(x, s_id, queue_size, k2, batch):
    """The official loop; the queue keeps the lowest s_ID, the earlier of equal ones.
    Returns the scores and the queue's final (s_ID, position) entries."""
    x = unit(x)
    queue, out = [], []  # entries (s_ID, stream position)
    for b0 in range(0, len(x), batch):
        rows = range(b0, min(b0 + batch, len(x)))
        for i in rows:
            queue.append((s_id[i], i))
            if len(queue) > queue_size:
                queue.remove(max(queue))  # the highest s_ID, the latest of equal ones
        sims = x[list(rows)] @ x[[i for _, i in queue]].T
        out.extend(s_id[list(rows)] - kth_largest(sims, min(k2, len(queue))))
    return np.array(out), sorted(queue)


def knn_s_id(x, train, pos, k1, fraction):
    keys = unit(train)[inliers_by_hand(train, pos, fraction)]
    return kth_largest(unit(x) @ keys.T, min(k1, len(keys)))


def world(seed=0, n_train=30, n_test=23, d=6):
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(3, d))
    train = pos[rng.integers(3, size=n_train)] + 0.6 * rng.normal(size=(n_train, d))
    return pos, train.astype(np.float32), rng.normal(size=(n_test, d)).astype(np.float32)


OODD = {"k1": 4, "k2": 3, "queue_size": 5, "inlier_fraction": 0.5, "stream_batch_size": 2}


def fit_oodd(train, pos, **params):
    return get_detector("oodd").fit(train, texts(pos), None, SCALE, {**OODD, **params},
                                    device="cpu", budget_bytes=4096)  # fmt: skip


# --- informative inlier sampling ---------------------------------------------------------------


def test_informative_inliers_interleave_the_classes_by_confidence():
    pos, train, _ = world()
    rows, n_classes = informative_inliers(
        train, torch.as_tensor(texts(pos).embeddings), SCALE, 0.5, 4096
    )
    assert rows.tolist() == inliers_by_hand(train, pos, 0.5)
    assert n_classes == 3 and len(rows) == 15
    assert informative_inliers(train, torch.as_tensor(texts(pos).embeddings), SCALE, 0.01,
                               4096)[0].size == 1  # at least one  # fmt: skip


# --- the score ----------------------------------------------------------------------------


def test_oodd_matches_the_official_loop_with_evictions_and_a_queue_not_yet_full():
    pos, train, x = world()
    det = fit_oodd(train, pos)
    s_id = knn_s_id(x, train, pos, OODD["k1"], OODD["inlier_fraction"])
    want, queue = oodd_by_hand(x, s_id, OODD["queue_size"], OODD["k2"], 2)
    np.testing.assert_allclose(det.score(x), want, rtol=1e-6, atol=1e-6)
    # K2 = 3 above the first batch's fill of 2: its two images take the smallest cosine.
    assert det.score_stats == {"k2_clamped": 2}
    # The queue: the 5 lowest s_ID of all 23 images, whatever came and left.
    assert sorted(det.state["arrival"].tolist()) == sorted(i for _, i in queue)
    np.testing.assert_allclose(np.sort(det.state["priority"]), [p for p, _ in queue], rtol=1e-6)
    assert det.state["seen"][0] == len(x)


def test_each_batch_is_scored_against_a_queue_that_holds_it():
    pos, train, x = world(seed=1)
    # A queue larger than the stream and K2 = 1: every image's nearest queued feature is
    # itself, at cosine 1.
    det = fit_oodd(train, pos, k2=1, queue_size=64, stream_batch_size=5)
    s_id = knn_s_id(x, train, pos, OODD["k1"], OODD["inlier_fraction"])
    np.testing.assert_allclose(det.score(x), s_id - 1.0, atol=1e-6)


def test_k1_above_the_kept_features_takes_their_smallest_cosine():
    pos, train, x = world(seed=2, n_train=6)
    det = fit_oodd(train, pos, k1=50, queue_size=64)  # 3 kept: s_ID = the 3rd largest
    assert any("k1 = 50" in w for w in det.fit_stats["warnings"])
    s_id = knn_s_id(x, train, pos, 50, OODD["inlier_fraction"])
    want, _ = oodd_by_hand(x, s_id, 64, OODD["k2"], 2)
    np.testing.assert_allclose(det.score(x), want, rtol=1e-6, atol=1e-6)


def test_ties_in_the_queue_keep_the_earlier_feature():
    # One ID feature e0 and K1 = 1: s_ID = the first coordinate, equal (to the bit) for
    # 0.6 e0 + 0.8 e_j whatever j; a later image of lower s_ID evicts the latest of the ties.
    d = 6
    e = np.eye(d, dtype=np.float32)
    x = np.stack([0.6 * e[0] + 0.8 * e[j] for j in (1, 2, 3, 4)] + [0.2 * e[0] + e[5]])
    det = get_detector("oodd").fit(
        e[:1], texts(e[:1]), None, SCALE,
        {"k1": 1, "k2": 1, "queue_size": 2, "inlier_fraction": 1.0, "stream_batch_size": 1},
        device="cpu",
    )  # fmt: skip
    got = det.score(x)
    s_id = unit(x)[:, 0]
    assert len(set(s_id[:4].tolist())) == 1  # really tied
    want, queue = oodd_by_hand(x, s_id, 2, 1, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert [i for _, i in queue] == [4, 0] and sorted(det.state["arrival"].tolist()) == [0, 4]
    # Images 2 and 3 left the queue at once, before being scored: their nearest queued
    # feature is image 0 or 1 (cosine 0.36), not themselves; 0, 1 and 4 find themselves.
    np.testing.assert_allclose(got, s_id - [1.0, 1.0, 0.36, 0.36, 1.0], atol=1e-6)


def test_oodd_mcm_subtracts_from_mcm_and_a_single_label_ties_everything():
    pos, _, x = world(seed=3)
    det = get_detector("oodd_mcm").fit(None, texts(pos), None, SCALE,
                                       {"k2": 2, "queue_size": 4, "stream_batch_size": 3},
                                       device="cpu")  # fmt: skip
    mcm = softmax(unit(x) @ unit(pos).T, axis=1).max(axis=1)  # T = 1 on raw cosines
    want, _ = oodd_by_hand(x, mcm, 4, 2, 3)
    np.testing.assert_allclose(det.score(x), want, rtol=1e-6, atol=1e-6)
    # One positive: MCM = 1 for every image, so the queue keeps the first four forever.
    single = get_detector("oodd_mcm").fit(None, texts(pos[:1]), None, SCALE,
                                          {"k2": 2, "queue_size": 4, "stream_batch_size": 3},
                                          device="cpu")  # fmt: skip
    single.score(x)
    assert sorted(single.state["arrival"].tolist()) == [0, 1, 2, 3]


def test_k2_above_the_queue_size_is_refused():
    pos, train, _ = world()
    with pytest.raises(DetectorConfigError, match="k2 = 6 is more than queue_size = 5"):
        fit_oodd(train, pos, k2=6)


# --- streams, reset, files ----------------------------------------------------------------


def test_streams_are_seeded_and_reset_per_pair():
    pos, train, x = world(seed=4, n_test=30)
    id_x, ood_x = x[:18], x[18:] + 1.5
    det = fit_oodd(train, pos)
    a = score_stream(det, id_x, ood_x, seed=3)
    b = score_stream(det, id_x, ood_x, seed=3)  # reset: the same again
    np.testing.assert_array_equal(a.id_scores, b.id_scores)
    np.testing.assert_array_equal(a.ood_scores, b.ood_scores)
    assert a.order.tolist() == stream_order(len(x), 3).tolist()
    # The stream scored by hand in its seeded order, then put back in row order.
    both = np.concatenate([id_x, ood_x])
    s_id = knn_s_id(both, train, pos, OODD["k1"], OODD["inlier_fraction"])
    want = np.empty(len(both))
    want[a.order] = oodd_by_hand(both[a.order], s_id[a.order], OODD["queue_size"],
                                 OODD["k2"], 2)[0]  # fmt: skip
    np.testing.assert_allclose(np.r_[a.id_scores, a.ood_scores], want, rtol=1e-6, atol=1e-6)
    # Another seed, another order: the queue sees other images first.
    c = score_stream(det, id_x, ood_x, seed=4)
    assert not np.allclose(c.id_scores, a.id_scores)
    # The reset copies the queue but shares the (never modified) ID-train features.
    assert det.state["keys"] is det._fitted_state["keys"]
    assert det.state["queue"] is not det._fitted_state["queue"]


def test_detector_files_keep_the_state_and_the_score_job_resets_per_pair(tmp_path):
    pos, train, x = world(seed=5, n_test=36)
    det = fit_oodd(train, pos, stream_seed=2)
    det.meta.update(MODEL)
    det.save(tmp_path / "d.h5")
    back = load_detector(tmp_path / "d.h5", device="cpu")
    np.testing.assert_array_equal(back.state["keys"], det.state["keys"])
    assert back.state["seen"][0] == 0
    np.testing.assert_allclose(back.score(x[:7]), det.score(x[:7]), rtol=1e-12)
    sets = {"test": x[:12], "ood-a": x[12:24] + 1.0, "ood-b": x[24:] - 1.0}
    paths = []
    for name, emb in sets.items():
        paths.append(tmp_path / f"{name}.h5")
        write_image_embeddings(paths[-1], ImageEmbeddings(
            emb, np.full(len(emb), -1), [f"{name}/{i}.png" for i in range(len(emb))],
            attrs=dict(MODEL)))  # fmt: skip
    score_files(tmp_path / "d.h5", list(sets), paths, ["test"], tmp_path / "s.h5",
                context={"method": "oodd"}, device="cpu")  # fmt: skip
    fresh = load_detector(tmp_path / "d.h5", device="cpu")
    for bench in ("ood-a", "ood-b"):
        id_s, ood_s = read_pair(tmp_path / "s.h5", "test", bench)
        want = score_stream(fresh, sets["test"], sets[bench], seed=2)
        np.testing.assert_allclose(id_s.scores, want.id_scores, rtol=1e-12)
        np.testing.assert_allclose(ood_s.scores, want.ood_scores, rtol=1e-12)
