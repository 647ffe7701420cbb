import math

import numpy as np
import pytest
import torch
from helpers import planted_clusters
from sklearn.metrics import normalized_mutual_info_score

from clustermine.clustering import ClusterConfigError, fit_clusters
from clustermine.clustering.temi import (
    BatchedHeads,
    TEMIConfig,
    fit_temi,
    lr_schedule,
    prepare_embeddings,
    temi_loss,
)
from clustermine.knn import cosine_knn

# Small heads and a fast teacher so that a few CPU epochs converge; the code path is the same.
FAST = dict(
    heads=3,
    epochs=12,
    batch_size=120,
    lr=2e-3,
    warmup_epochs=1,
    knn=10,
    teacher_momentum=0.9,
    hidden_dim=128,
    bottleneck_dim=64,
)


def test_defaults_follow_the_design():
    cfg = TEMIConfig(num_clusters=4000)
    assert (cfg.heads, cfg.knn, cfg.hidden_dim, cfg.bottleneck_dim) == (50, 50, 512, 256)
    assert (cfg.teacher_momentum, cfg.student_temp, cfg.teacher_temp) == (0.996, 0.1, 0.1)
    assert (cfg.beta, cfg.prior_momentum, cfg.weight_decay) == (0.6, 0.9, 1e-4)


def test_loss_uniform_case_in_closed_form():
    # p = q = π = 1/C: pmi = ln(C · C^-2β · C) = (2 - 2β) ln C and w = 1/C.
    c, beta = 3, 0.6
    logp = torch.full((2, 4, c), -math.log(c))
    prior = torch.full((2, c), 1 / c)
    loss = temi_loss(logp, logp, logp, logp, prior, beta)
    expected = -(2 - 2 * beta) * math.log(c) / c
    np.testing.assert_allclose(loss.numpy(), [expected, expected], rtol=1e-6)


def test_loss_matches_formula_by_hand():
    rng = np.random.default_rng(0)
    h, b, c, beta = 2, 3, 4, 0.6

    def probs():
        p = rng.uniform(0.05, 1.0, size=(h, b, c))
        return p / p.sum(-1, keepdims=True)

    px, py, qx, qy = probs(), probs(), probs(), probs()
    prior = rng.uniform(0.1, 1.0, size=(h, c))
    prior /= prior.sum(-1, keepdims=True)
    expected = []
    for head in range(h):
        total = 0.0
        for p, q in ((px, qy), (py, qx)):  # both pair orders: student on one, teacher on other
            terms = []
            for i in range(b):
                w = np.mean([sum(qx[g, i, k] * qy[g, i, k] for k in range(c)) for g in range(h)])
                s = sum((p[head, i, k] * q[head, i, k]) ** beta / prior[head, k] for k in range(c))
                terms.append(w * math.log(s))
            total += np.mean(terms)
        expected.append(-0.5 * total)
    t = {name: torch.tensor(np.log(a)) for name, a in dict(px=px, py=py, qx=qx, qy=qy).items()}
    loss = temi_loss(t["px"], t["py"], t["qx"], t["qy"], torch.tensor(prior), beta)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-10)


def test_loss_is_finite_for_sharp_distributions():
    logits = torch.tensor([[[200.0, -200.0, 0.0]]]) / 0.1
    logp = torch.log_softmax(logits, -1)
    loss = temi_loss(logp, logp, logp, logp, torch.full((1, 3), 1 / 3), 0.6)
    assert torch.isfinite(loss).all()


def test_batched_heads_equal_separate_heads():
    gen = torch.Generator().manual_seed(0)
    heads = BatchedHeads(4, 6, 5, hidden_dim=8, bottleneck_dim=7, generator=gen)
    with torch.no_grad():
        heads.b1.normal_(generator=gen)
        heads.g.uniform_(0.5, 2.0, generator=gen)
    x = torch.randn(9, 6, generator=gen)
    out = heads(x)
    assert out.shape == (4, 9, 5)
    for h in range(4):
        z = torch.nn.functional.gelu(x @ heads.w1[h] + heads.b1[h]) @ heads.w2[h] + heads.b2[h]
        z = z / z.norm(dim=1, keepdim=True)
        weight = heads.v[h] / heads.v[h].norm(dim=0, keepdim=True) * heads.g[h]
        torch.testing.assert_close(out[h], z @ weight)
        torch.testing.assert_close(heads(x, head=h)[0], out[h])


def test_lr_schedule_warms_up_then_holds_or_decays():
    cfg = TEMIConfig(num_clusters=2, epochs=10, warmup_epochs=2, lr=1e-3)
    lr = lr_schedule(cfg, steps_per_epoch=5, batch_size=512)
    assert len(lr) == 50 and lr[0] > 0
    assert np.all(np.diff(lr[:10]) > 0) and lr[9] == pytest.approx(2e-3)
    np.testing.assert_allclose(lr[10:], 2e-3)
    cfg.min_lr = 1e-5
    lr = lr_schedule(cfg, steps_per_epoch=5, batch_size=256)
    assert lr[10] == pytest.approx(1e-3) and lr[-1] == pytest.approx(1e-5, rel=0.1)
    assert np.all(np.diff(lr[10:]) <= 0)


def test_prepare_embeddings():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(100, 5))
    np.testing.assert_allclose(np.linalg.norm(prepare_embeddings(x, False), axis=1), 1, 1e-6)
    z = prepare_embeddings(x, True)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_temi_recovers_planted_clusters(seed):
    x, y = planted_clusters(seed=seed)
    result = fit_temi(x, 10, {**FAST, "seed": seed}, device="cpu")
    assert normalized_mutual_info_score(y, result.assignments) >= 0.9
    assert result.head_losses.shape == (3,) and result.loss_history.shape == (12, 3)
    assert result.best_head == int(np.argmin(result.head_losses))
    assert result.loss_history[-1].mean() < result.loss_history[0].mean()
    assert result.sizes.sum() == len(x) and result.params["heads"] == 3


def test_temi_is_deterministic_on_cpu_and_reuses_a_given_graph():
    x, _ = planted_clusters(n=400)
    params = {**FAST, "epochs": 2, "batch_size": 100}
    a = fit_temi(x, 10, params, device="cpu")
    graph = cosine_knn(x, 20, device="cpu")  # more neighbours than needed: first 10 used
    b = fit_temi(x, 10, params, neighbors=graph, device="cpu")
    np.testing.assert_array_equal(a.assignments, b.assignments)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    c = fit_temi(x, 10, {**params, "seed": 5}, device="cpu")
    assert not np.array_equal(a.loss_history, c.loss_history)


def test_bad_parameters_are_named():
    x, _ = planted_clusters(n=50)
    with pytest.raises(ClusterConfigError, match=r"no parameter\(s\) \['head'\]"):
        fit_clusters("temi", x, 5, {"method": "temi", "head": 3})
    with pytest.raises(ClusterConfigError, match="beta"):
        fit_clusters("temi", x, 5, {"beta": 0})
    with pytest.raises(ClusterConfigError, match="only 3 neighbours"):
        fit_temi(x, 5, {"knn": 10}, neighbors=np.zeros((50, 3), dtype=np.int64), device="cpu")
    with pytest.raises(ClusterConfigError, match="unknown clusterer 'dbscan'"):
        fit_clusters("dbscan", x, 5)
