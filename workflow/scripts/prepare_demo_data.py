"""Write one of the demo's image folders; the marker output records what was written."""

import json

from clustermine.demo.data import prepare_demo_data
from clustermine.atomic import atomic_path
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = dict(snakemake.params.demo)
root, split = params.pop("root"), params.pop("split")
summary = prepare_demo_data(root, splits=[split], **params)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps({"params": params, "classes": summary[split]}, indent=1) + "\n")
