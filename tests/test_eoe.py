"""EOE (Cao et al., ICML 2024): the score against the official formula written here in plain
NumPy, on inputs that reach its edge cases; and the names_file miner that brings a user's
outlier names (the paper's LLM-envisioned class names) in as negatives."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import REPO

from clustermine.config import load_workflow_config
from clustermine.config.workflow import WorkflowConfig
from clustermine.detectors import DetectorConfigError, get_detector, load_detector
from clustermine.h5io import TextEmbeddings
from clustermine.labelsets import LabelSet
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.registry import mine_labels

pytestmark = pytest.mark.usefixtures("one_thread")


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def official_eoe(images, pos, neg, beta=0.25, temperature=1.0):
    """The official score (utils/detection_util.py, score_ablation EOE), in float64: the
    cosines of unit images to the unit ID texts then the outlier texts, ONE softmax of
    cosine / T over all of them, max over the ID columns − β · max over the outlier ones.
    The softmax subtracts each row's maximum, as torch's does."""
    logits = unit(images) @ np.concatenate([unit(pos), unit(neg)]).T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p[:, : len(pos)].max(axis=1) - beta * p[:, len(pos) :].max(axis=1)


def texts(emb, prefix):
    emb = np.asarray(emb, np.float32)
    return TextEmbeddings(emb, [f"{prefix}{i}" for i in range(len(emb))])


def fit(pos, neg, **params):
    return get_detector("eoe").fit(None, pos, neg, 100.0, params, device="cpu")


@pytest.fixture
def world():
    rng = np.random.default_rng(0)
    d = 16
    pos, neg = unit(rng.normal(size=(6, d))), unit(rng.normal(size=(40, d)))
    images = np.concatenate([
        pos[rng.integers(0, 6, 30)] + 0.5 * rng.normal(size=(30, d)) / np.sqrt(d),
        neg[rng.integers(0, 40, 30)] + 0.5 * rng.normal(size=(30, d)) / np.sqrt(d),
    ]) * 3.0  # fmt: skip
    return texts(pos, "id"), texts(neg, "out"), images.astype(np.float32)


@pytest.mark.parametrize("temperature,atol", [(1.0, 1e-7), (0.1, 1e-6), (0.01, 1e-5)])
@pytest.mark.parametrize("beta", [0.25, 0.0, 1.0])
def test_score_is_the_official_formula(world, temperature, atol, beta):
    pos, neg, images = world
    det = fit(pos, neg, beta=beta, temperature=temperature)
    want = official_eoe(images, pos.embeddings, neg.embeddings, beta, temperature)
    np.testing.assert_allclose(det.score(images), want, rtol=0, atol=atol)
    # The defaults are the paper's: β = 0.25, T = 1 on raw cosines (no logit scale).
    assert det.describe()["params"] == {"beta": beta, "temperature": temperature}
    assert fit(pos, neg).params == {"beta": 0.25, "temperature": 1.0}


def test_scores_separate_id_from_outlier_images(world):
    pos, neg, images = world
    scores = fit(pos, neg).score(images)
    assert scores[:30].mean() > scores[30:].mean()


def test_small_memory_blocks_and_outlier_order_change_nothing(world):
    pos, neg, images = world
    whole = fit(pos, neg).score(images)
    det = fit(pos, neg)
    det.set_runtime("cpu", budget_bytes=256)  # blocks of a few images × a few names
    # Equal up to the float32 rounding of each block's logsumexp.
    np.testing.assert_allclose(det.score(images), whole, rtol=1e-6, atol=0)
    order = np.random.default_rng(1).permutation(len(neg.names))
    shuffled = TextEmbeddings(neg.embeddings[order], [neg.names[i] for i in order])
    np.testing.assert_allclose(fit(pos, shuffled).score(images), whole, rtol=1e-6, atol=0)


def test_peaked_cosines_do_not_overflow_and_ties_split_the_mass():
    """At T = 1e-4 the logits are up to 10,000: exp overflows float64 without the max
    subtracted. An image on a positive scores 1, one on an outlier −β, and one exactly
    between two labels (a tie) shares their mass: (1 − β)/2 between a positive and an
    outlier, 1/2 between two positives."""
    eye = np.eye(4)
    pos, neg = texts(eye[:2], "id"), texts(eye[2:], "out")
    images = np.array([eye[0], eye[2], eye[0] + eye[2], eye[0] + eye[1]], np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(unit(images) @ eye.T / 1e-4)).any()
    scores = fit(pos, neg, temperature=1e-4).score(images)
    assert np.isfinite(scores).all()
    # Logits of 7,071 carry float32 rounding (a spacing of 4.9e-4), as in any float32
    # implementation, the official one included: log-probabilities are that exact.
    tol = 2 * float(np.spacing(np.float32(7072)))
    np.testing.assert_allclose(scores, [1.0, -0.25, 0.375, 0.5], rtol=tol, atol=0)
    want = official_eoe(images, pos.embeddings, neg.embeddings, 0.25, 1e-4)
    np.testing.assert_allclose(scores, want, rtol=tol, atol=0)


def test_tied_positives_and_a_single_positive(world):
    pos, neg, images = world
    # Two positives with the same text: the maximum is the same; the softmax counts both.
    twin = texts(np.concatenate([pos.embeddings, pos.embeddings[:1]]), "id")
    want = official_eoe(images, twin.embeddings, neg.embeddings)
    np.testing.assert_allclose(fit(twin, neg).score(images), want, rtol=0, atol=1e-7)
    # One positive: still informative (unlike MCM over one label, which is constant).
    one = texts(pos.embeddings[:1], "id")
    scores = fit(one, neg, temperature=0.05).score(images)
    want = official_eoe(images, one.embeddings, neg.embeddings, 0.25, 0.05)
    np.testing.assert_allclose(scores, want, rtol=0, atol=1e-6)
    assert np.ptp(scores) > 0.1


def test_outliers_that_are_positives_are_dropped_and_recorded(world, tmp_path):
    pos, neg, images = world
    named = TextEmbeddings(pos.embeddings, ["golden retriever", "tabby cat", *pos.names[2:]])
    # The LLM's list repeats an ID class, spelt differently: the same name after normalising.
    outliers = TextEmbeddings(
        np.concatenate([neg.embeddings, named.embeddings[:1]]), [*neg.names, "Golden_Retriever"]
    )
    det = fit(named, outliers)
    assert det.text_neg.names == neg.names
    assert det.fit_stats["dropped_outliers"] == ["Golden_Retriever"]
    assert "1 outlier name(s) that are also positives" in det.fit_stats["warnings"][0]
    want = official_eoe(images, pos.embeddings, neg.embeddings)
    np.testing.assert_allclose(det.score(images), want, rtol=0, atol=1e-7)
    # Kept, the duplicate would penalise the ID class by its own probability.
    kept = official_eoe(images, pos.embeddings, outliers.embeddings)
    assert (kept < want - 1e-3).any()
    # The file holds the outliers used.
    det.save(tmp_path / "eoe.h5")
    again = load_detector(tmp_path / "eoe.h5", device="cpu")
    assert again.text_neg.names == neg.names
    np.testing.assert_array_equal(again.score(images), det.score(images))
    with pytest.raises(DetectorConfigError, match="every one of the 2 outlier names"):
        fit(named, TextEmbeddings(named.embeddings[:2], ["Tabby Cat", "golden retriever"]))
    with pytest.raises(DetectorConfigError, match="needs negative labels"):
        fit(named, None)


# --- the names_file miner --------------------------------------------------------------------

CORPUS = ["dog", "cat", "tree", "river", "hot dog", "cloud"]
CLASSES = ["dog", "cat"]


def inputs(tmp_path, lines: str, **kwargs) -> MiningInputs:
    path = tmp_path / "outliers.txt"
    path.write_text(lines)
    emb = np.random.default_rng(0).normal(size=(len(CORPUS), 8))
    return MiningInputs(CORPUS, emb, CLASSES, files={"negatives_file": str(path)},
                        sources={"corpus": "text/words.h5"}, **kwargs)  # fmt: skip


def test_names_file_negatives_are_the_listed_corpus_names(tmp_path):
    # Comments, blank lines, case, underscores and repeats as an LLM's list may have them.
    lines = "# envisioned outliers\nCloud\n\nhot_dog\nDog\ncloud\nunicorn\nriver\n"
    with pytest.raises(MinerConfigError) as err:
        mine_labels("names_file", inputs(tmp_path, lines))
    message = str(err.value)
    assert "outliers.txt" in message and "'unicorn'" in message and "text/words.h5" in message
    assert "'cloud'" not in message and "missing_names: drop" in message
    labels = mine_labels("names_file", inputs(tmp_path, lines), {"missing_names": "drop"})
    assert labels.neg_names == ["cloud", "hot dog", "river"]  # file order, each once
    assert labels.pos_names == ["dog", "cat"]  # Y_GT
    assert labels.stats["names_not_in_corpus"] == ["unicorn"]
    assert labels.stats["names_that_are_positives"] == ["dog"]
    assert labels.stats["n_names_in_file"] == 5
    assert labels.params == {"missing_names": "drop", "missing_gt": "error"}


def test_names_file_takes_the_positives_of_another_label_set(tmp_path):
    mined = LabelSet("clustermine", CORPUS, positives=[2, 0], negatives=[])
    labels = mine_labels(
        "names_file", inputs(tmp_path, "tree\nriver\ncat\n", label_sets={"positives_of": mined})
    )
    assert labels.pos_names == ["tree", "dog"]
    assert labels.neg_names == ["river", "cat"]  # cat is Y_GT but not a positive here
    assert labels.stats["names_that_are_positives"] == ["tree"]
    with pytest.raises(MinerConfigError, match="no name of .*outliers.txt is left"):
        mine_labels("names_file", inputs(tmp_path, "dog\ncat\n"))
    with pytest.raises(MinerConfigError, match="holds no names"):
        mine_labels("names_file", inputs(tmp_path, "# nothing yet\n"))


def test_from_files_a_names_file_label_set_fits_eoe(tmp_path):
    """The mine and fit jobs' library functions: the file named by the key of role ``file``
    reaches the miner, the sidecar lists it, and EOE fits on the label set's outliers."""
    from clustermine.detectors.files import fit_detector_files
    from clustermine.h5io import ImageEmbeddings, write_image_embeddings, write_text_embeddings
    from clustermine.labelsets import read_label_meta
    from clustermine.mining.files import mine_label_set_files

    rng = np.random.default_rng(0)
    attrs = {"model_arch": "clustermine-tiny", "model_pretrained": "random-weights",
             "logit_scale": 100.0}  # fmt: skip
    write_text_embeddings(tmp_path / "corpus.h5", TextEmbeddings(
        rng.normal(size=(len(CORPUS), 8)).astype(np.float32), CORPUS, attrs=attrs))  # fmt: skip
    write_image_embeddings(tmp_path / "train.h5", ImageEmbeddings(
        rng.normal(size=(6, 8)).astype(np.float32), np.arange(6) % 2,
        [f"{i}.png" for i in range(6)], class_names=CLASSES, attrs=attrs))  # fmt: skip
    (tmp_path / "outliers.txt").write_text("tree\ncloud\ncat\n")
    files = {"images": tmp_path / "train.h5", "text": tmp_path / "corpus.h5", "classes": [],
             "negatives_file": tmp_path / "outliers.txt"}  # fmt: skip
    tsv = tmp_path / "labels.tsv"
    mine_label_set_files(files, "names_file", {}, str(tsv),
                         context={"label_set": "llm", "idset": "toy", "model": "m"})  # fmt: skip
    assert read_label_meta(tsv)["inputs"]["negatives_file"] == str(tmp_path / "outliers.txt")
    det = fit_detector_files(
        "eoe", {}, train=tmp_path / "train.h5", text=tmp_path / "corpus.h5", labels=tsv,
        context={"method": "eoe", "labels": "llm"}, device="cpu",
    )  # fmt: skip
    assert det.text_pos.names == CLASSES and det.text_neg.names == ["tree", "cloud"]


def test_the_names_file_is_an_input_of_the_label_set_not_a_parameter():
    cfg = WorkflowConfig({"label_sets": {"llm": {
        "miner": "names_file", "negatives_file": "outliers/imagenet.txt", "positives_of": "cm",
    }}})  # fmt: skip
    assert cfg.label_set_files("llm") == {"negatives_file": "outliers/imagenet.txt"}
    assert cfg.label_set_references("llm") == {"positives_of": "cm"}
    assert cfg.label_set("llm")[1] == {}  # editing the file, not a parameter, reruns it


def test_the_demo_runs_eoe_with_mined_outliers_on_gt_and_clustermine():
    cfg = load_workflow_config(
        [REPO / "config/config.yaml"], REPO / "workflow/schemas/config.schema.yaml"
    )
    for method, miner in (("eoe", "gt"), ("eoe-cm", "clustermine")):
        plugin, _, labels = cfg.method(method)
        assert plugin.name == "eoe"
        label_plugin, params, _ = cfg.label_set(labels)
        assert label_plugin.name == miner and params["negatives"] == "dissimilar"
        assert params["num_negatives"] <= 1000  # the demo stays cheap
