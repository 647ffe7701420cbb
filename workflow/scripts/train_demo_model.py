"""Train the demo model's image tower; write the checkpoint and a JSON summary."""

import json
import os

from clustermine.demo_data import TRAINING_SPLITS
from clustermine.demo_model import TrainSettings, train_demo_model
from clustermine.h5io import atomic_path
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = dict(snakemake.params.train)
root = params.pop("root")
settings = TrainSettings(threads=snakemake.threads, **params)
_, summary = train_demo_model(
    {split: os.path.join(root, split) for split in TRAINING_SPLITS},
    snakemake.output.checkpoint,
    settings,
    eval_folder=os.path.join(root, "fmnist-test"),
)
with atomic_path(snakemake.output.summary) as tmp:
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
