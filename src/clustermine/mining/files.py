"""Mine one label set from the files the workflow made: read what the miner's catalog entry
needs, check that every file comes from one model and one corpus, run the miner and write the
label-set TSV with its sidecar (the mine_labels job; unit-tested without Snakemake).

``files`` maps input names to paths, as the workflow names them: ``images``, ``text`` and
``classes`` (a list, empty without class-name embeddings) always; ``zeroshot``, ``clusters``
and ``density`` for the needs ``zero_shot``, ``clusters`` and ``text_density``; every key
of role ``label_set`` the label set gives (e.g. ``positives_of``), naming that label set's
file, whose :class:`~clustermine.labelsets.LabelSet` the miner finds in
``MiningInputs.label_sets`` under the same key; every key of role ``file`` (e.g.
``negatives_file``), a user's file whose path the miner finds in ``MiningInputs.files``; and
``conjugated`` for the need ``conjugated_labels`` (the text file of CSP's conjugated labels,
``MiningInputs.conjugated``).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from clustermine import catalog
from clustermine.h5io import (
    EmbeddingFileError,
    check_same_model,
    read_attributes,
    read_class_names,
    read_image_embeddings,
    read_image_labels,
    read_text_embeddings,
)
from clustermine.labelsets import LabelSet, read_label_set, write_label_set
from clustermine.mining.inputs import MinerConfigError, MiningInputs
from clustermine.mining.registry import mine_labels, miner_plugin
from clustermine.mining.report import cluster_summary, quality_of
from clustermine.staging import recorded_path

log = logging.getLogger(__name__)


def read_mining_inputs(
    files: Mapping[str, Any],
    plugin: catalog.Plugin,
    *,
    device: str | None = None,
    budget_bytes: int | None = None,
) -> tuple[MiningInputs, dict[str, Any], dict[str, Any]]:
    """The :class:`MiningInputs` of a miner from ``files``; also the image file's attributes
    and the cluster file's health (empty without clusters)."""
    from clustermine.clustering.io import read_clusters
    from clustermine.mining.debiased import read_density
    from clustermine.zeroshot import read_zero_shot

    image_attrs = read_attributes(files["images"])
    corpus = read_text_embeddings(files["text"])
    checked = [(files["images"], image_attrs), (files["text"], corpus.attrs)]
    sources = {"corpus": recorded_path(files["text"]),
               "class_names": recorded_path(files["images"])}  # fmt: skip
    class_names = read_class_names(files["images"])
    class_emb = class_syn = None
    if files.get("classes"):
        path = files["classes"][0]
        classes = read_text_embeddings(path)
        checked.append((path, classes.attrs))
        if class_names is not None and classes.names != class_names:
            raise EmbeddingFileError(
                f"{path} encodes other class names than {files['images']} holds; delete it so "
                "that it is re-encoded"
            )
        class_names, class_emb, class_syn = classes.names, classes.embeddings, classes.synsets
        sources["class_emb"] = recorded_path(path)
    top1 = assignments = corpus_density = density_attrs = image_emb = None
    health: dict[str, Any] = {}
    if plugin.has("zero_shot"):
        zs = read_zero_shot(files["zeroshot"], top1_only=True)
        checked.append((files["zeroshot"], zs.attrs))
        if int(zs.attrs.get("num_names", len(corpus))) != len(corpus):
            raise EmbeddingFileError(
                f"{files['zeroshot']} was computed over another corpus; delete it"
            )
        top1, sources["top1"] = zs.top1, recorded_path(files["zeroshot"])
    if plugin.has("clusters"):
        clusters = read_clusters(files["clusters"])
        checked.append((files["clusters"], clusters.attrs))
        assignments, sources["assignments"] = clusters.assignments, recorded_path(files["clusters"])
        # The health of the clustering voted on travels with the label set.
        health = clusters.health
        for message in health.get("messages", []):
            log.warning("the clustering voted on failed a health check: %s", message)
    if plugin.has("image_embeddings"):
        image_emb = read_image_embeddings(files["images"]).embeddings
        sources["images"] = recorded_path(files["images"])
    if plugin.has("text_density"):
        corpus_density, density_attrs = read_density(files["density"])
        checked.append((files["density"], density_attrs))
        if len(corpus_density) != len(corpus):
            raise EmbeddingFileError(
                f"{files['density']} was computed over another corpus; delete it"
            )
        sources["density"] = recorded_path(files["density"])
    conjugated = None
    if plugin.has("conjugated_labels"):
        conjugated = read_text_embeddings(files["conjugated"])
        checked.append((files["conjugated"], conjugated.attrs))
        if conjugated.attrs.get("corpus", corpus.attrs.get("corpus")) != corpus.attrs.get("corpus"):
            raise EmbeddingFileError(
                f"{files['conjugated']} holds the conjugated labels of corpus "
                f"{conjugated.attrs.get('corpus')!r}, not of {corpus.attrs.get('corpus')!r} "
                f"({files['text']}); delete it"
            )
        sources["conjugated"] = recorded_path(files["conjugated"])
    label_sets: dict[str, LabelSet] = {}
    for key in _keys_of_role(plugin, files, "label_set"):
        label_sets[key] = read_label_set(files[key], corpus.names, class_names)
        sources[key] = recorded_path(files[key])
        log.info("%s: %d positives of %s", key, label_sets[key].n_pos, files[key])
    user_files = {key: str(files[key]) for key in _keys_of_role(plugin, files, "file")}
    sources.update({key: recorded_path(path) for key, path in user_files.items()})
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
        device=device,
        sources=sources,
        corpus_pos=corpus.pos,
        corpus_norms=corpus.norms,
        corpus_density=corpus_density,
        corpus_density_attrs=density_attrs,
        label_sets=label_sets,
        files=user_files,
        conjugated=conjugated,
        **({} if budget_bytes is None else {"budget_bytes": budget_bytes}),
    )
    return inputs, image_attrs, health


def _keys_of_role(plugin: catalog.Plugin, files: Mapping[str, Any], role: str) -> list[str]:
    """The keys of ``role`` the plugin has and ``files`` gives a file for."""
    return [
        p.name
        for p in (*plugin.params, *plugin.input_keys)
        if p.role == role and p.name in files
    ]


def mine_label_set_files(
    files: Mapping[str, Any],
    miner: str,
    params: Mapping[str, Any],
    out_tsv: str,
    *,
    context: Mapping[str, Any],
    num_clusters: int | None = None,
    device: str | None = None,
    budget_bytes: int | None = None,
) -> LabelSet:
    """Mine a label set from ``files`` and write it to ``out_tsv`` (and its sidecar).

    ``params``: the miner's parameters; ``context``: what names the label set in messages and
    in its sidecar (``label_set``, ``idset``, ``model``); ``num_clusters``: C of the clusters
    voted on, for the sidecar's cluster analysis.
    """
    plugin = miner_plugin(miner)
    inputs, image_attrs, health = read_mining_inputs(
        files, plugin, device=device, budget_bytes=budget_bytes
    )
    try:
        labels = mine_labels(miner, inputs, params)
    except MinerConfigError as err:
        raise MinerConfigError(
            f"config: label_sets.{context.get('label_set')} (idset {context.get('idset')}): {err}"
        ) from err
    log.info("%s: %d positives, %d negatives", miner, labels.n_pos, len(labels.negatives))
    per_label: dict[str, Any] = {}  # filled by quality_of: per-positive columns of the TSV
    extra = {
        **context,
        "model_arch": image_attrs.get("model_arch"),
        "model_pretrained": image_attrs.get("model_pretrained"),
        "inputs": inputs.sources,
        "label_quality": quality_of(labels, inputs, per_label),
        "cluster_analysis": (
            cluster_summary(inputs, num_clusters, read_image_labels(files["images"]))
            if inputs.assignments is not None
            else None
        ),
        "cluster_health": health if plugin.has("clusters") else None,
    }
    write_label_set(out_tsv, labels, extra, per_label)
    return labels
