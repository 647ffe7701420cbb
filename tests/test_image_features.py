"""GL-MCM and CoVer, and the two kinds of image input they read: local patch features and
corrupted views.

The scores are re-derived from the official formulas (AtsuMiyai/GL-MCM,
utils/detection_util.py; tmlr-group/CoVer, utils/detection_util.py) in plain NumPy float64 on
inputs that reach their edges: a patch grid of 1 x 1, λ = 0, a view list of just the original
image, and temperatures at which cosine / T overflows a naive exp. The local features are
re-derived from the model's weights in NumPy, from the input of the tower's last block.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from helpers import make_image_folder

from clustermine.datasets.build import build_index
from clustermine.detectors import get_detector
from clustermine.detectors.base import DetectorConfigError
from clustermine.detectors.files import feature_inputs
from clustermine.detectors.registry import load_detector
from clustermine.encode import encode_images, merge_shards, view_batch
from clustermine.h5io import (
    EmbeddingFileError,
    ImageEmbeddings,
    TextEmbeddings,
    read_image_embeddings,
    read_local_features,
    write_image_embeddings,
    write_local_features,
)
from clustermine.local_features import (
    LocalFeaturesUnsupported,
    check_local_support,
    encode_local,
    local_support,
)
from clustermine.models import load_model
from clustermine.views import PRESETS, Corruption, ViewError, expand_views, view_seed

pytestmark = pytest.mark.usefixtures("one_thread")
D = 8
SMALL_BUDGET = 4096  # a few rows per block: chunked reductions are exercised too


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax_max(logits):
    """max softmax, in float64 shifted by the maximum (the official code's F.softmax)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    return p.max(axis=-1)


def official_gl_mcm(glob, local, texts, t=1.0, lam=1.0):
    """GL-MCM as the official code computes it: unit features, softmax over the labels of
    cosine / T, the max over labels (global) and over patches and labels (local)."""
    t_unit = unit(texts)
    g = softmax_max(unit(glob) @ t_unit.T / t)
    loc = softmax_max(unit(local.astype(np.float64)) @ t_unit.T / t)  # [N, P]
    return g + lam * loc.max(axis=1)


def world(n=7, p=4, c=5, seed=0):
    rng = np.random.default_rng(seed)
    texts = rng.normal(size=(c, D)) * rng.uniform(0.5, 3, size=(c, 1))  # not unit length
    glob = rng.normal(size=(n, D)).astype(np.float32)
    local = rng.normal(size=(n, p, D)).astype(np.float16)
    return glob, local, texts


def detector(score, texts, neg=None, **params):
    pos = TextEmbeddings(np.asarray(texts, np.float32), [f"c{i}" for i in range(len(texts))])
    negs = None if neg is None else TextEmbeddings(
        np.asarray(neg, np.float32), [f"n{i}" for i in range(len(neg))])  # fmt: skip
    return get_detector(score).fit(None, pos, negs, 100.0, params, budget_bytes=SMALL_BUDGET)


# --- GL-MCM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("t,lam", [(1.0, 1.0), (0.5, 2.0), (0.001, 1.0)])
def test_gl_mcm_is_the_official_formula(t, lam):
    glob, local, texts = world()
    det = detector("gl_mcm", texts, temperature=t, lam=lam)
    got = det.score(glob, local=local)
    np.testing.assert_allclose(got, official_gl_mcm(glob, local, texts, t, lam), atol=1e-5)
    assert np.isfinite(got).all()  # T = 0.001: cosine / T near 1000, no overflow


def test_gl_mcm_of_a_one_patch_grid_adds_the_mcm_of_that_patch():
    glob, local, texts = world(p=1)
    det = detector("gl_mcm", texts)
    mcm = detector("mcm", texts)
    expected = mcm.score(glob) + mcm.score(local[:, 0].astype(np.float32))
    np.testing.assert_allclose(det.score(glob, local=local), expected, atol=1e-6)


def test_gl_mcm_with_lambda_zero_is_mcm_and_needs_the_local_features():
    glob, local, texts = world()
    det = detector("gl_mcm", texts, lam=0.0)
    np.testing.assert_allclose(det.score(glob, local=local), detector("mcm", texts).score(glob))
    with pytest.raises(DetectorConfigError, match="needs the local patch features"):
        det.score(glob)
    with pytest.raises(EmbeddingFileError, match="6 rows for 7 images"):
        det.score(glob, local=local[:6])
    with pytest.raises(EmbeddingFileError, match="dimension 4 but"):
        det.score(glob, local=local[..., :4])


# --- CoVer -------------------------------------------------------------------------------------


def test_cover_with_only_the_original_image_is_its_base():
    glob, _, texts = world()
    for base, params in [("mcm", {"temperature": 0.01}), ("energy", {}), ("maxlogit", {})]:
        det = detector("cover", texts, base=base, base_params=params, views=[])
        base_det = detector(base, texts, **params)
        np.testing.assert_array_equal(det.score(glob, views=[]), base_det.score(glob))


def test_cover_is_the_mean_of_its_base_over_the_views():
    rng = np.random.default_rng(3)
    glob, _, texts = world()
    views = [rng.normal(size=glob.shape).astype(np.float32) for _ in range(3)]
    det = detector("cover", texts, views=["fog-1", "brightness-2", "gaussian_blur-1"])
    t_unit = unit(texts)
    expected = np.mean([softmax_max(unit(x) @ t_unit.T) for x in (glob, *views)], axis=0)
    np.testing.assert_allclose(det.score(glob, views=views), expected, atol=1e-6)
    with pytest.raises(DetectorConfigError, match="averages over 3 views"):
        det.score(glob, views=views[:2])


def test_cover_of_a_base_with_state_and_negatives_survives_its_file(tmp_path):
    rng = np.random.default_rng(4)
    glob, _, texts = world()
    neg = rng.normal(size=(9, D))
    det = detector("cover", texts, neg, base="eq1_grouped", base_params={"groups": 2, "tau": 0.01},
                   views=["fog-1"])  # fmt: skip
    view = rng.normal(size=glob.shape).astype(np.float32)
    base = detector("eq1_grouped", texts, neg, groups=2, tau=0.01)
    np.testing.assert_allclose(det.score(glob, views=[view]),
                               (base.score(glob) + base.score(view)) / 2)  # fmt: skip
    det.save(tmp_path / "cover.h5")
    again = load_detector(tmp_path / "cover.h5", None, SMALL_BUDGET)
    np.testing.assert_array_equal(again.score(glob, views=[view]), det.score(glob, views=[view]))
    assert again.params["base_params"]["remainder"] == "spread"  # resolved, recorded


def test_cover_refuses_what_it_cannot_average():
    _, _, texts = world()
    with pytest.raises(DetectorConfigError, match="'fog-9' that must match"):
        detector("cover", texts, views=["fog-9"])
    with pytest.raises(DetectorConfigError, match="unknown view 'blur-1'"):
        detector("cover", texts, views=["blur-1"])
    with pytest.raises(DetectorConfigError, match="unknown view preset 'most'"):
        detector("cover", texts, views="most")
    with pytest.raises(DetectorConfigError, match="needs negative labels"):
        detector("cover", texts, base="eq1")
    with pytest.raises(DetectorConfigError, match="must be one of"):
        detector("cover", texts, base="clipscope")  # adapts at test time: not a base
    with pytest.raises(DetectorConfigError, match=r"no parameter\(s\) \['temprature'\]"):
        detector("cover", texts, base_params={"temprature": 0.5})


# --- views -------------------------------------------------------------------------------------


def test_view_presets_are_the_official_sets():
    assert len(PRESETS["recommended"]) == 12 and "motion_blur-2" in PRESETS["recommended"]
    assert len(PRESETS["full"]) == 18 * 5 and not any(v.startswith("frost") for v in PRESETS["full"])
    assert expand_views([]) == ()
    with pytest.raises(ViewError, match="listed twice"):
        expand_views(["fog-1", "fog-1"])
    with pytest.raises(ViewError, match="unknown view 'fog'"):
        expand_views(["fog"])


def test_a_view_is_the_same_in_every_run_and_differs_between_images():
    """A view is seeded by the image's pixels (as the model sees them), the view and the seed:
    the same image gives the same view in every run and from any path or upload; another image,
    view or seed gives other draws; the global NumPy generator is left as it was."""
    from PIL import Image

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)
    img = Image.fromarray(x)
    noise = Corruption("gaussian_noise-3")
    a, b = noise.pixels(x), noise.pixels(x.copy())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(noise(img)), a)  # PIL in, PIL out: same pixels
    assert a.shape == x.shape and a.dtype == np.uint8
    other = x.copy()
    other[0, 0, 0] ^= 1  # one bit of one pixel: another image, other draws
    assert not np.array_equal(noise.pixels(other)[1:], a[1:])
    assert not np.array_equal(Corruption("gaussian_noise-3", seed=1).pixels(x), a)
    assert view_seed("gaussian_noise-3", x) != view_seed("gaussian_noise-2", x)
    state = np.random.get_state()[1].copy()
    Corruption("shot_noise-1").pixels(x)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state put back
    # A batch of uint8 pixels [B, 3, H, W] (a deployed detector's) gives the same views.
    batch = torch.from_numpy(np.stack([x, other])).permute(0, 3, 1, 2)
    views = view_batch(noise, batch).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(views[0], a)
    np.testing.assert_array_equal(views[1], noise.pixels(other))
    with pytest.raises(ValueError, match="uint8 pixel batches"):
        view_batch(noise, batch.float())
    with pytest.raises(ViewError, match="uint8 RGB pixels"):
        noise.pixels(x.astype(np.float32))


# --- local features from the model's weights ----------------------------------------------------


def _np(t):
    return t.detach().double().numpy()


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * _np(ln.weight) + _np(ln.bias)


def test_vit_local_features_are_the_value_path_of_the_last_block():
    loaded = load_model("clustermine-tiny", None)
    visual = loaded.model.visual
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        glob, local = encode_local(loaded.model, images, "clustermine-tiny")
        np.testing.assert_allclose(_np(glob), _np(loaded.model.encode_image(images)), atol=1e-6)
    assert len(visual.transformer.resblocks) == 1  # its input: the patch embeddings
    # 8 x 8 patches, row-major, each flattened as the convolution's weights are (c, y, x).
    px = _np(images).reshape(2, 3, 4, 8, 4, 8).transpose(0, 2, 4, 1, 3, 5).reshape(2, 16, -1)
    tokens = px @ _np(visual.conv1.weight).reshape(32, -1).T
    cls = np.broadcast_to(_np(visual.class_embedding), (2, 1, 32))
    x = np.concatenate([cls, tokens], axis=1) + _np(visual.positional_embedding)
    x = _layer_norm(x, visual.ln_pre)
    block = visual.transformer.resblocks[-1]
    w = x.shape[-1]
    w_v, b_v = _np(block.attn.in_proj_weight)[2 * w :], _np(block.attn.in_proj_bias)[2 * w :]
    v = _layer_norm(x, block.ln_1) @ w_v.T + b_v
    h = x + v @ _np(block.attn.out_proj.weight).T + _np(block.attn.out_proj.bias)
    mlp = block.mlp
    hidden = _layer_norm(h, block.ln_2) @ _np(mlp.c_fc.weight).T + _np(mlp.c_fc.bias)
    hidden = 0.5 * hidden * (1 + np.vectorize(math.erf)(hidden / np.sqrt(2)))  # exact GELU
    h = h + hidden @ _np(mlp.c_proj.weight).T + _np(mlp.c_proj.bias)
    expected = _layer_norm(h, visual.ln_post)[:, 1:] @ _np(visual.proj)
    assert local.shape == (2, 16, 32)  # 32 px / 8 px patches: a 4 x 4 grid, class token left out
    np.testing.assert_allclose(_np(local), expected, atol=1e-4)


def test_resnet_local_features_are_the_attention_pool_value_path():
    loaded = load_model("RN50", None)
    visual = loaded.model.visual
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        glob, local = encode_local(loaded.model, images, "RN50")
        fmap = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))
    pool = visual.attnpool
    x = _np(fmap).reshape(1, fmap.shape[1], -1).transpose(0, 2, 1)  # [1, 49, C], row-major grid
    v = x @ _np(pool.v_proj.weight).T + _np(pool.v_proj.bias)
    expected = v @ _np(pool.c_proj.weight).T + _np(pool.c_proj.bias)
    assert local.shape == (1, 49, 1024)
    np.testing.assert_allclose(_np(local), expected, rtol=1e-4, atol=1e-4)
    # What GL-MCM relies on: the patches agree with the image as a whole.
    cos = torch.nn.functional.cosine_similarity(
        torch.nn.functional.normalize(local, dim=-1).mean(1), glob)
    assert cos.item() > 0.5


def test_towers_without_a_value_path_are_refused_by_name():
    import open_clip

    text = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    vision = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}
    pooled = open_clip.model.CLIP(32, {**vision, "attentional_pool": True}, text)
    assert "attentional pooler" in local_support(pooled, "vit-attnpool")
    averaged = open_clip.model.CLIP(32, {**vision, "pool_type": "avg"}, text)
    assert "pools by 'avg'" in local_support(averaged, "vit-avg")
    other = torch.nn.Module()
    other.visual = torch.nn.Linear(2, 2)
    with pytest.raises(LocalFeaturesUnsupported, match="odd-tower: .*image tower is a Linear"):
        check_local_support(other, "odd-tower")


# --- files -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("views") / "imgs"
    make_image_folder(root, {"a": 3, "b": 3}, seed=5)
    return build_index({"type": "imagefolder", "root": str(root)})


def test_local_features_and_views_are_encoded_like_embeddings(folder, tmp_path):
    loaded = load_model("clustermine-tiny", None)
    glob = encode_images(loaded, folder, batch_size=4)
    local = encode_images(loaded, folder, 0, 4, batch_size=3, features="local")
    rest = encode_images(loaded, folder, 4, None, batch_size=3, features="local")
    assert local.embeddings.shape == (4, 16, 32) and local.attrs["features"] == "local"
    for i, part in enumerate((local, rest)):
        part.attrs.update(loaded.attrs(), dataset="imgs")
        write_local_features(tmp_path / f"s{i}.h5", part)
    merged = merge_shards([tmp_path / "s0.h5", tmp_path / "s1.h5"])
    assert merged.embeddings.shape == (6, 16, 32) and merged.paths == glob.paths
    write_local_features(tmp_path / "local.h5", merged)
    back = read_local_features(tmp_path / "local.h5")
    assert back.embeddings.dtype == np.float16
    np.testing.assert_allclose(back.embeddings, merged.embeddings, rtol=1e-3, atol=1e-3)
    with pytest.raises(EmbeddingFileError, match="missing dataset 'embeddings'"):
        read_image_embeddings(tmp_path / "local.h5")
    # A view: other pixels, the same images; the same in a second run.
    view = encode_images(loaded, folder, batch_size=4, view="gaussian_noise-2", seed=1)
    again = encode_images(loaded, folder, batch_size=4, view="gaussian_noise-2", seed=1)
    np.testing.assert_array_equal(view.embeddings, again.embeddings)
    assert view.paths == glob.paths and not np.allclose(view.embeddings, glob.embeddings)
    assert view.attrs["view"] == "gaussian_noise-2" and "imagecorruptions" in view.attrs[
        "corruptions"]  # fmt: skip


def test_local_features_that_are_not_finite_are_refused(tmp_path):
    bad = np.zeros((3, 2, 4), np.float32)
    bad[1, 0, 2] = 1e6  # beyond float16
    data = ImageEmbeddings(bad, np.zeros(3, np.int64), ["a", "b", "c"])
    with pytest.raises(EmbeddingFileError, match=r"rows \[1\] are not finite"):
        write_local_features(tmp_path / "x.h5", data)
    ok = ImageEmbeddings(np.zeros((3, 2, 4)), np.zeros(3, np.int64), ["a", "b", "c"])
    write_local_features(tmp_path / "x.h5", ok)
    with h5py.File(tmp_path / "x.h5", "r+") as f:
        f["local"][2, 1, 0] = np.nan
    with pytest.raises(EmbeddingFileError, match=r"x.h5: the local features of image rows \[2\]"):
        read_local_features(tmp_path / "x.h5")


def test_feature_files_must_hold_the_same_images_in_order(tmp_path):
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(3, D))
    paths = ["a.png", "b.png", "c.png"]
    attrs = {"model_arch": "m", "model_pretrained": "p"}
    images = ImageEmbeddings(rng.normal(size=(3, D)).astype(np.float32), np.zeros(3), paths,
                             attrs=attrs)  # fmt: skip
    write_image_embeddings(tmp_path / "img.h5", images)
    det = detector("cover", texts, views=["fog-1", "fog-2"])

    def view(name, rows, view_attr, seed=7):
        data = ImageEmbeddings(images.embeddings[rows], np.zeros(len(rows)),
                               [paths[r] for r in rows],
                               attrs={**attrs, "view": view_attr, "view_seed": seed})  # fmt: skip
        write_image_embeddings(tmp_path / name, data)
        return tmp_path / name

    good = [view("f1.h5", [0, 1, 2], "fog-1"), view("f2.h5", [0, 1, 2], "fog-2")]
    out = feature_inputs(det, tmp_path / "img.h5", images, views=good)
    assert len(out["views"]) == 2
    assert det.meta["view_seed"] == 7  # recorded, so that a deployed detector seeds its views alike
    reseeded = [good[0], view("r2.h5", [0, 1, 2], "fog-2", seed=8)]
    with pytest.raises(EmbeddingFileError, match="view seed 8, but the detector's views with 7"):
        feature_inputs(det, tmp_path / "img.h5", images, views=reseeded)
    with pytest.raises(EmbeddingFileError, match="holds the view 'fog-2', not 'fog-1'"):
        feature_inputs(det, tmp_path / "img.h5", images, views=good[::-1])
    shuffled = [view("s1.h5", [0, 2, 1], "fog-1"), good[1]]
    with pytest.raises(EmbeddingFileError, match="first difference at row 1"):
        feature_inputs(det, tmp_path / "img.h5", images, views=shuffled)
