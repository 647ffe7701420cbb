"""Prompt-ensembled text embeddings of names with an open_clip text tower (DESIGN §4)."""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
import torch

from .models import LoadedModel

log = logging.getLogger(__name__)


def masked_padding_id(model) -> int | None:
    """The pad token id of a text tower that masks its padding (open_clip's Hugging Face text
    towers), whose trailing padding can be cut off without changing any output; None for other
    towers (CLIP's own pools at the end-of-text token, SigLIP's at the last position, so their
    padding stays)."""
    try:
        from open_clip.hf_model import HFTextEncoder
    except ImportError:  # open_clip without transformers support
        return None
    text = getattr(model, "text", None)
    return text.config.pad_token_id if isinstance(text, HFTextEncoder) else None


def encode_texts(
    loaded: LoadedModel,
    names: Sequence[str],
    templates: Sequence[str],
    batch_size: int | None = None,
    precision: str = "auto",
    progress_every: float = 30.0,
    chunk_texts: int = 65536,
    return_norms: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Prompt ensemble: normalise each prompt's embedding, average, normalise (float32 [M, D]).

    With ``return_norms`` also the norm of every name's raw feature, the prompt mean of
    ``encode_text`` before any normalisation (float32 [M]; debiased negative mining ranks
    names by it).

    Prompts are encoded ``chunk_texts`` at a time. For text towers that mask their padding the
    prompts of a chunk are batched by token length and each batch cut to its longest prompt,
    which on a CPU triples the speed of a MiniLM tower (the output is the same). ``batch_size``
    (prompts per forward pass) defaults to 1024 on a GPU and 256 on a CPU, where smaller
    length-sorted batches are cut shorter.
    """
    if batch_size is None:
        batch_size = 1024 if loaded.device.type == "cuda" else 256
    pad = masked_padding_id(loaded.model)
    per_chunk = max(1, chunk_texts // len(templates))
    out, norms = [], []
    last = t0 = time.monotonic()
    with torch.inference_mode(), loaded.autocast(precision):
        for s in range(0, len(names), per_chunk):
            chunk = names[s : s + per_chunk]
            tokens = loaded.tokenizer([t.format(n) for n in chunk for t in templates])
            if pad is not None:
                lengths = (tokens != pad).sum(1)
                order = torch.argsort(lengths, stable=True)
            else:
                order = torch.arange(len(tokens))
            feats = None
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                batch = tokens[idx]
                if pad is not None:
                    batch = batch[:, : max(1, int(lengths[idx].max()))]
                raw_batch = loaded.model.encode_text(batch.to(loaded.device)).float().cpu()
                if feats is None:
                    feats = torch.empty(len(tokens), raw_batch.shape[1])
                    raw = torch.empty(len(tokens), raw_batch.shape[1])
                feats[idx] = torch.nn.functional.normalize(raw_batch, dim=-1)
                raw[idx] = raw_batch
                if time.monotonic() - last > progress_every:
                    last = time.monotonic()
                    done = s + (b + len(idx)) // len(templates)
                    log.info("encoded %d/%d names", done, len(names))
            feats = feats.view(len(chunk), len(templates), -1).mean(dim=1)
            out.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
            norms.append(raw.view(len(chunk), len(templates), -1).mean(dim=1).norm(dim=-1).numpy())
    if not out:  # no names (a corpus without adjectives has no conjugated labels): [0, D]
        with torch.inference_mode():
            dim = loaded.model.encode_text(loaded.tokenizer([""]).to(loaded.device)).shape[-1]
        out, norms = [np.empty((0, dim), np.float32)], [np.empty(0, np.float32)]
    log.info(
        "encoded %d names x %d prompts in %.1f s", len(names), len(templates), time.monotonic() - t0
    )
    emb = np.concatenate(out).astype(np.float32)
    return (emb, np.concatenate(norms).astype(np.float32)) if return_norms else emb
