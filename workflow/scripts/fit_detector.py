"""Fit one OOD detector (score + label set) of an ID set, calibrate it on the ID set's held-out
ID images (their sorted scores give thresholds and p-values of new images) and save it as one
HDF5 file."""

import numpy as np
import torch

from clustermine.compute import budget_from_mb
from clustermine.detectors import DetectorConfigError, get_detector
from clustermine.h5io import (
    TextEmbeddings,
    check_same_model,
    read_attributes,
    read_image_embeddings,
    read_text_embeddings,
)
from clustermine.labelsets import read_label_set
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
try:
    cls = get_detector(params.score)
except DetectorConfigError as err:
    raise DetectorConfigError(f"config: methods.{wc.method}: {err}") from err
score_params = dict(params.score_params)

corpus = read_text_embeddings(inp.text)
checked = [(inp.text, corpus.attrs)]
text_pos = text_neg = None
if inp.labels:
    classes = read_text_embeddings(inp.classes[0]) if inp.classes else None
    if classes is not None:
        checked.append((inp.classes[0], classes.attrs))
    labels = read_label_set(inp.labels[0], corpus.names, classes.names if classes else None)
    pos_emb = labels.positive_embeddings(corpus.embeddings, classes.embeddings if classes else None)
    text_pos = TextEmbeddings(pos_emb, labels.pos_names)
    text_neg = TextEmbeddings(corpus.embeddings[labels.negatives], labels.neg_names)
    log.info(
        "label set %s: %d positives, %d negatives",
        params.labels,
        labels.n_pos,
        len(labels.negatives),
    )

train = train_labels = None
if cls.plugin().has("train_embeddings"):
    images = read_image_embeddings(inp.train)
    checked.append((inp.train, images.attrs))
    train, train_labels = images.embeddings, images.labels
else:
    checked.append((inp.train, read_attributes(inp.train)))
check_same_model(checked)
image_attrs = checked[-1][1]
logit_scale = float(image_attrs.get("logit_scale", corpus.attrs.get("logit_scale", np.nan)))
meta = {
    "model": wc.model,
    "idset": wc.idset,
    "method": wc.method,
    "labels": params.labels,
    "model_arch": image_attrs.get("model_arch"),
    "model_pretrained": image_attrs.get("model_pretrained"),
    # What rebuilds the model to score new images (clustermine score / serve / export).
    "random_weights": image_attrs.get("random_weights"),
    "preprocessing": image_attrs.get("preprocessing"),
    "embedding_dim": image_attrs.get("embedding_dim"),
    "library_versions": image_attrs.get("library_versions"),
    "corpus": corpus.attrs.get("corpus"),
    "prompts": corpus.attrs.get("prompts"),
    "train": str(inp.train),
}
try:
    detector = cls.fit(
        train,
        text_pos,
        text_neg,
        logit_scale,
        score_params,
        train_labels,
        meta=meta,
        device=snakemake.resources.device,
        budget_bytes=budget_from_mb(snakemake.resources.budget_mb),
    )
except DetectorConfigError as err:
    raise DetectorConfigError(f"config: methods.{wc.method} (idset {wc.idset}): {err}") from err
log.info("fitted %s: %s", params.score, detector.describe())
if inp.calibration:
    held_out = read_image_embeddings(inp.calibration[0])
    x = held_out.embeddings
    if detector.stateful:
        # Scored as rule score scores a stream: shuffled by the stream seed, from the fitted
        # state; then back to the fitted state, in which the detector is saved.
        order = np.random.default_rng(int(detector.params.get("stream_seed", 0))).permutation(
            len(x)
        )
        scores = np.empty(len(x))
        scores[order] = detector.score(x[order], held_out.attrs, inp.calibration[0])
        detector.reset()
    else:
        scores = detector.score(x, held_out.attrs, inp.calibration[0])
    cal = detector.calibrate(
        scores, params.calibration, {"embeddings": str(inp.calibration[0])}
    )
    log.info(
        "calibrated on %s (%d images): threshold %.6g accepts 95%% of them",
        params.calibration,
        len(cal),
        cal.threshold(0.95),
    )
else:
    log.warning("idset %s has no calibration set: no thresholds or p-values", wc.idset)
detector.save(snakemake.output[0])
