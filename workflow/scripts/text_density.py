"""The density of every corpus name's raw text feature (debiased negative mining), cached per
text file and k1 so that every label set mined from it reuses it."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.h5io import EmbeddingFileError, read_text_embeddings
from clustermine.logs import setup_logging
from clustermine.mining.debiased import density, write_density

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, wc, res = snakemake.input, snakemake.wildcards, snakemake.resources
text = read_text_embeddings(inp.text)
if text.norms is None:
    raise EmbeddingFileError(
        f"{inp.text} holds no raw text norms (it predates them); delete it so that it is "
        "re-encoded"
    )
k1 = int(wc.k)
log.info("density of %d names, k1=%d", len(text), k1)
r, clamped = density(
    text.embeddings, text.norms, k1, device=res.device, budget_bytes=budget_from_mb(res.budget_mb)
)
if clamped:
    log.warning("%d pseudo-distances were <= 0 and clamped (raw text norms below 1)", clamped)
attrs = {k: text.attrs.get(k) for k in ("model_arch", "model_pretrained", "corpus", "prompts")}
write_density(snakemake.output[0], r, clamped, {**attrs, "k1": k1, "text": str(inp.text)})
