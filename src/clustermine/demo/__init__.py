"""The offline demo (docs/demo.md), apart from the core: image folders written from offline
Debian/PyPI data (:mod:`clustermine.demo.data`), the small CLIP-style demo model trained on
them (:mod:`clustermine.demo.model`) and the summary of its numbers against their bars
(:mod:`clustermine.demo.summary`).

This module holds the demo's names only and imports nothing heavy: the workflow reads it when
it is parsed.
"""

# Every image folder the demo writes, one rule job each (workflow/rules/demo.smk).
SPLITS = (
    "fmnist-train", "fmnist-test", "fmnist-test-inverted", "digits-train", "digits-heldout",
    "tuxpaint-train", "tuxpaint-heldout", "textures", "unseen-digits",
)  # fmt: skip
# The splits the demo model's image tower is trained on, and the one its zero-shot accuracy is
# measured on while it trains.
TRAINING_SPLITS = ("fmnist-train", "digits-train", "tuxpaint-train")
EVAL_SPLIT = "fmnist-test"
# The Tux Paint categories the demo model trains on (config demo.train.tuxpaint_train_categories);
# the others are its held-out OOD stamps.
TUXPAINT_TRAIN_CATEGORIES = (
    "animals", "food", "hobbies", "household", "medical", "military", "people", "plants",
)  # fmt: skip
