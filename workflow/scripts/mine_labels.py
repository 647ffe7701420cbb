"""Mine one label set of an ID set: positives and negatives from the corpus (and Y_GT)."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.clustering.io import read_clusters
from clustermine.h5io import (
    EmbeddingFileError,
    check_same_model,
    read_attributes,
    read_image_embeddings,
    read_image_labels,
    read_text_embeddings,
)
from clustermine.labelsets import read_label_meta, read_label_set, write_label_set
from clustermine.logs import setup_logging
from clustermine.mining import MinerConfigError, MiningInputs, mine_labels, miner_plugin
from clustermine.mining.debiased import read_density
from clustermine.mining.inputs import read_class_names
from clustermine.mining.report import cluster_summary, quality_of
from clustermine.zeroshot import read_zero_shot

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
image_attrs = read_attributes(inp.images)
corpus = read_text_embeddings(inp.text)
checked = [(inp.images, image_attrs), (inp.text, corpus.attrs)]
sources = {"corpus": str(inp.text), "class_names": str(inp.images)}
class_names = read_class_names(inp.images)
class_emb = class_syn = None
if inp.classes:
    classes = read_text_embeddings(inp.classes[0])
    checked.append((inp.classes[0], classes.attrs))
    if class_names is not None and classes.names != class_names:
        raise EmbeddingFileError(
            f"{inp.classes[0]} encodes other class names than {inp.images} holds; delete it so "
            "that it is re-encoded"
        )
    class_names, class_emb, class_syn = classes.names, classes.embeddings, classes.synsets
    sources["class_emb"] = str(inp.classes[0])
top1 = assignments = cluster_health = None
if "zeroshot" in inp.keys():
    zs = read_zero_shot(inp.zeroshot)
    checked.append((inp.zeroshot, zs.attrs))
    if int(zs.attrs.get("num_names", len(corpus))) != len(corpus):
        raise EmbeddingFileError(f"{inp.zeroshot} was computed over another corpus; delete it")
    top1, sources["top1"] = zs.top1, str(inp.zeroshot)
if "clusters" in inp.keys():
    clusters = read_clusters(inp.clusters)
    checked.append((inp.clusters, clusters.attrs))
    assignments, sources["assignments"] = clusters.assignments, str(inp.clusters)
    # The health of the clustering voted on travels with the label set.
    cluster_health = clusters.health
    for message in cluster_health.get("messages", []):
        log.warning("the clustering voted on failed a health check: %s", message)
image_emb = None
if miner_plugin(params.miner).has("image_embeddings"):
    images = read_image_embeddings(inp.images)
    image_emb, sources["images"] = images.embeddings, str(inp.images)
corpus_density = None
if "density" in inp.keys():
    corpus_density, density_attrs = read_density(inp.density)
    checked.append((inp.density, density_attrs))
    if len(corpus_density) != len(corpus):
        raise EmbeddingFileError(f"{inp.density} was computed over another corpus; delete it")
    sources["density"] = str(inp.density)
positive_set = None
if "positives" in inp.keys():
    # Another label set's positives become this one's (debiased mining's positives_of).
    positive_set = read_label_set(inp.positives, corpus.names, class_names)
    sources["positives_of"] = str(inp.positives)
    log.info("taking the %d positives of %s", positive_set.n_pos, inp.positives)
check_same_model(checked)

inputs = MiningInputs(
    corpus.names,
    corpus.embeddings,
    class_names,
    class_emb,
    corpus.synsets,
    class_syn,
    image_emb=image_emb,
    top1=top1,
    assignments=assignments,
    budget_bytes=budget_from_mb(snakemake.resources.budget_mb),
    device=snakemake.resources.device,
    sources=sources,
    corpus_pos=corpus.pos,
    corpus_norms=corpus.norms,
    corpus_density=corpus_density,
    positive_set=positive_set,
)
miner_params = dict(params.miner_params)
if "match" in inp.keys():
    # As many positives as another label set has (equal-|Y_pos| comparisons, paper Table 4).
    miner_params["num_positives"] = read_label_meta(inp.match)["stats"]["n_pos"]
    sources["match_positives_of"] = str(inp.match)
    log.info("matching the %d positives of %s", miner_params["num_positives"], inp.match)
try:
    labels = mine_labels(params.miner, inputs, miner_params)
except MinerConfigError as err:
    raise MinerConfigError(f"config: label_sets.{wc.labelset} (idset {wc.idset}): {err}") from err
log.info("%s: %d positives, %d negatives", params.miner, labels.n_pos, len(labels.negatives))
per_label = {}  # filled by quality_of: per-positive columns of the TSV
extra = {
    "label_set": wc.labelset,
    "idset": wc.idset,
    "model": wc.model,
    "model_arch": image_attrs.get("model_arch"),
    "model_pretrained": image_attrs.get("model_pretrained"),
    "inputs": sources,
    "label_quality": quality_of(labels, inputs, per_label),
    "cluster_analysis": (
        cluster_summary(inputs, params.num_clusters, read_image_labels(inp.images))
        if assignments is not None
        else None
    ),
    "cluster_health": cluster_health,
}
write_label_set(snakemake.output.tsv, labels, extra, per_label)
