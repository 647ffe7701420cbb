from clustermine.corpus import read_corpus_tsv
from clustermine.datasets import read_index
from clustermine.encode_text import encode_texts
from clustermine.h5io import TextEmbeddings, write_text_embeddings
from clustermine.logs import setup_logging
from clustermine.models import load_model
from clustermine.prompts import get_prompts

log = setup_logging(snakemake.log[0])
params, wc = snakemake.params, snakemake.wildcards
# Conjugated labels (CSP) have a prompt set of their own; the other texts that of the wildcard.
prompt_set = params.prompts if params.source == "conjugated" else wc.prompts
templates = get_prompts(prompt_set)
if params.source == "class_names":
    index = read_index(snakemake.input.names)
    if not index.class_names:
        raise ValueError(f"dataset {wc.dataset} has no class names to encode")
    names, pos, synsets, source = index.class_names, None, None, {"dataset": wc.dataset}
else:
    corpus = read_corpus_tsv(snakemake.input.names)
    names, pos, synsets, source = corpus.names, corpus.pos, corpus.synsets, {"corpus": wc.corpus}
    if params.source == "conjugated":
        source["conjugated_seed"] = int(wc.seed)
loaded = load_model(
    params.model["arch"],
    params.model["pretrained"],
    cache_dir=snakemake.resources.weights_cache,
    slug=wc.model,
    checkpoint_copy=next(iter(snakemake.input.checkpoint), None),  # a staged copy, if any
)
log.info(
    "encoding %d names x %d prompts (%s) with %s on %s",
    len(names),
    len(templates),
    prompt_set,
    loaded.arch,
    loaded.device,
)
emb, norms = encode_texts(
    loaded, names, templates, precision=params.model["precision"], return_norms=True
)
attrs = {
    **loaded.attrs(),
    **source,
    "model": wc.model,
    "prompts": prompt_set,
    "templates": list(templates),
}
write_text_embeddings(
    snakemake.output[0], TextEmbeddings(emb, list(names), pos, synsets, attrs, norms)
)
