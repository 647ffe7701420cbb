"""Train the demo model's image tower; write the checkpoint and a JSON summary."""

import json
import os

from clustermine.demo.model import TrainSettings, train_demo_model
from clustermine.atomic import atomic_path
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = dict(snakemake.params.train)
root = params.pop("root")
splits, eval_split = params.pop("training_splits"), params.pop("eval_split")
settings = TrainSettings(threads=snakemake.threads, **params)
_, summary = train_demo_model(
    {split: os.path.join(root, split) for split in splits},
    snakemake.output.checkpoint,
    settings,
    eval_folder=os.path.join(root, eval_split),
)
with atomic_path(snakemake.output.summary) as tmp:
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
