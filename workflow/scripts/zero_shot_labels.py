"""Top-k corpus names of every image of a dataset (cached input of the image-based miners)."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.h5io import check_same_model, read_text_embeddings
from clustermine.image_rows import open_image_rows
from clustermine.logs import setup_logging
from clustermine.staging import recorded_path
from clustermine.zeroshot import write_zero_shot, zero_shot_topk

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
text = read_text_embeddings(inp.text)
res = snakemake.resources
# The ID-train rows are read a block at a time: the job holds the names, not the images.
with open_image_rows(inp.images) as images:
    check_same_model([(inp.images, images.attrs), (inp.text, text.attrs)])
    log.info("zero-shot top-%d of %d images over %d names", params.k, len(images), len(text))
    result = zero_shot_topk(
        images.embeddings, text.embeddings, params.k, budget_from_mb(res.budget_mb), res.device
    )
attrs = {k: images.attrs[k] for k in ("model_arch", "model_pretrained") if k in images.attrs}
write_zero_shot(
    snakemake.output[0],
    result,
    {
        **attrs,
        "model": wc.model,
        "dataset": wc.dataset,
        "corpus": wc.corpus,
        "prompts": wc.prompts,
        "images": recorded_path(inp.images),
        "text": recorded_path(inp.text),
    },
)
