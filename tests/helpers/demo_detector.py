"""A demo ClusterMine detector made in well under a minute (for the deployment tests and
benchmarks/bench_service.py): the demo model trained briefly on real demo data, ClusterMine
(k-means) over a small word list, Eq. 1, calibrated on held-out Fashion-MNIST test images, and
saved with the model attributes the workflow records. The workflow's own demo detector
(`make demo`) is made the same way from more data, more training and all of WordNet."""

from __future__ import annotations

from pathlib import Path

from clustermine.demo import data as dd

# A word list standing in for WordNet: the Fashion-MNIST class names (the corpus option
# add_class_names_of), the other demo classes and everyday names.
WORDS = [
    *dd.FASHION_MNIST_CLASSES, *dd.DIGIT_CLASSES, *dd.TEXTURES,
    "animal", "food", "plant", "vehicle", "toy", "tool", "house", "person", "flower", "tree",
    "dog", "cat", "horse", "bird", "fish", "car", "boat", "train", "plane", "bicycle", "apple",
    "banana", "bread", "cake", "chair", "table", "lamp", "clock", "guitar", "piano", "river",
    "mountain", "number", "letter", "symbol", "sign", "map", "flag", "ball", "star", "moon",
    "sun", "cloud", "rock", "stone", "sand", "wood", "metal", "glass", "paper", "book", "cup",
    "bottle", "box", "key", "phone", "computer", "camera", "robot", "rocket", "ship", "truck",
    "bus", "bridge", "tower", "castle", "church", "school", "hospital", "medicine", "soldier",
    "sword", "gun", "hammer", "brush", "pencil", "pen", "scissors", "knife", "spoon", "fork",
    "pizza", "cheese", "egg", "carrot", "tomato", "potato", "orange", "grape", "lemon", "leaf",
]  # fmt: skip
SIZES = {"fmnist-train": 1500, "fmnist-test": 1000, "digits-train": 400, "digits-heldout": 300}
TRAINING = ("fmnist-train", "digits-train")
CALIBRATION = 500  # the first fmnist-test images calibrate; the others are new images


def demo_data_available() -> bool:
    return (dd.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file() and (
        dd.TUXPAINT_STAMPS_DIR.is_dir()
    )


def write_folders(root: Path) -> dict[str, Path]:
    """Image folders: training splits, ``fmnist-calibration``, ``fmnist-new`` (held-out
    Fashion-MNIST test images the detector never saw) and ``digits-heldout``."""
    import numpy as np

    items = dict(dd.split_items(seed=0, splits=list(SIZES)))
    rng = np.random.default_rng(0)
    # A seeded sample of each split: the digits come sorted by class.
    items = {s: [items[s][i] for i in rng.permutation(len(items[s]))[:n]] for s, n in SIZES.items()}
    out = {}
    for split in SIZES:
        if split == "fmnist-test":
            test = items[split]
            for name, part in (("fmnist-calibration", test[:CALIBRATION]),
                               ("fmnist-new", test[CALIBRATION:])):  # fmt: skip
                dd.write_image_folder(root / name, part)
                out[name] = root / name
        else:
            dd.write_image_folder(root / split, items[split])
            out[split] = root / split
    return out


def build_demo_detector(root: Path, epochs: float = 2) -> dict[str, Path]:
    """Write folders, a checkpoint and ``detector.h5`` under ``root``; return their paths."""
    import torch

    from clustermine.clustering.kmeans import fit_kmeans
    from clustermine.datasets import index_imagefolder
    from clustermine.demo.model import DEMO_ARCH, TrainSettings, train_demo_model
    from clustermine.detectors import get_detector
    from clustermine.encode import encode_images
    from clustermine.encode_text import encode_texts
    from clustermine.h5io import TextEmbeddings, write_image_embeddings
    from clustermine.mining import MiningInputs, mine_labels
    from clustermine.models import load_model
    from clustermine.zeroshot import zero_shot_top1

    root = Path(root)
    folders = write_folders(root)
    checkpoint = root / "models" / "demo.pt"
    # Short: fewer images, epochs and captions (one name per class) than the demo's training.
    settings = TrainSettings(epochs=epochs, batch_size=64, lr=3e-3, warmup_steps=5,
                             names_per_class=1, threads=2, log_every=50)  # fmt: skip
    train_demo_model({s: folders[s] for s in TRAINING}, checkpoint, settings)
    loaded = load_model(DEMO_ARCH, str(checkpoint), "cpu")

    def embed(split):
        images = encode_images(loaded, index_imagefolder(folders[split]), batch_size=256)
        images.attrs.update(loaded.attrs(), dataset=split)
        write_image_embeddings(root / "embeddings" / f"{split}.h5", images)
        return images

    train, calibration = embed("fmnist-train"), embed("fmnist-calibration")
    text = encode_texts(loaded, WORDS, ["a photo of a {}."])
    with torch.no_grad():
        clusters = fit_kmeans(train.embeddings, 20, {"seed": 0}, device="cpu")
    inputs = MiningInputs(WORDS, text, top1=zero_shot_top1(train.embeddings, text),
                          assignments=clusters.assignments)  # fmt: skip
    labels = mine_labels("clustermine", inputs)

    def texts(rows):
        return TextEmbeddings(text[rows], [WORDS[i] for i in rows])

    attrs = train.attrs
    meta = {"model": "demo-minilm", "idset": "fmnist", "method": "clustermine",
            "labels": "clustermine", "corpus": "words", "prompts": "photo",
            **{k: attrs[k] for k in ("model_arch", "model_pretrained", "random_weights",
                                     "preprocessing", "library_versions")}}  # fmt: skip
    detector = get_detector("eq1").fit(
        None, texts(labels.positives), texts(labels.negatives), loaded.logit_scale,
        {"tau_factor": 0.1}, meta=meta, device="cpu",
    )  # fmt: skip
    scores = detector.score(calibration.embeddings, calibration.attrs, "fmnist-calibration")
    detector.calibrate(scores, "fmnist-calibration")
    detector.save(root / "detector.h5")
    return {**folders, "checkpoint": checkpoint, "detector": root / "detector.h5",
            "embeddings": root / "embeddings"}  # fmt: skip
