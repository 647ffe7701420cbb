"""Negatives from a user's list of names (e.g. the outlier class names an LLM envisioned for
EOE, Cao et al., ICML 2024); positives Y_GT, or another label set's (``positives_of``).

The file holds one name per line (blank lines and ``#`` comments skipped; the format of a
word-list corpus). Every name must be a corpus name: a label set indexes the rows of the
corpus text file, whose embeddings the detectors use. Names are matched after normalisation
(lower case, underscores to spaces, whitespace collapsed), each once, in file order. Names
missing from the corpus stop mining, naming the file and the names (``missing_names:
error``), or are left out and recorded (``drop``). A name that is also a positive is never a
negative: it is left out and recorded, as EOE's official code drops envisioned names equal to
an ID class name.
"""

from __future__ import annotations

import logging

import numpy as np

from clustermine.corpus import normalize_name, read_names
from clustermine.labelsets import LabelSet
from clustermine.mining.gt import positives_or_gt
from clustermine.mining.inputs import MinerConfigError, MiningInputs

log = logging.getLogger(__name__)

KEY = "negatives_file"  # the label set's key naming the file (catalog role ``file``)
SHOWN = 20  # names quoted in messages


def _quoted(names: list[str]) -> str:
    more = f" ... ({len(names)} in all)" if len(names) > SHOWN else ""
    return ", ".join(repr(n) for n in names[:SHOWN]) + more


def mine_names_file(inputs: MiningInputs, *, missing_names: str, missing_gt: str) -> LabelSet:
    """Positives as ``positives_or_gt``; negatives the corpus rows of the file's names."""
    path = inputs.files.get(KEY)
    if path is None:
        raise MinerConfigError(f"names_file: no {KEY} given (a file of names, one per line)")
    try:
        names = read_names(path, what=f"names_file: {KEY}")
    except (OSError, ValueError) as err:
        raise MinerConfigError(str(err)) from err
    positives, stats = positives_or_gt(inputs, missing_gt)
    class_rows = positives["class_positives"]
    pos_names = [positives["class_names"][i] for i in ([] if class_rows is None else class_rows)]
    pos_names += [inputs.corpus_names[i] for i in positives["positives"]]
    is_positive = {normalize_name(n) for n in pos_names}
    rows: dict[str, int] = {}
    for i, name in enumerate(inputs.corpus_names):
        rows.setdefault(normalize_name(name), i)
    dropped = [n for n in names if n in is_positive]
    missing = [n for n in names if n not in rows and n not in is_positive]
    if missing and missing_names == "error":
        raise MinerConfigError(
            f"names_file: {len(missing)} of the {len(names)} names of {path} are not in the "
            f"corpus ({inputs.sources.get('corpus', 'its text file')}): {_quoted(missing)}. "
            "A label set's names are corpus rows: use a corpus that holds them (a wordlist "
            "corpus of your word list plus these names), or set missing_names: drop to leave "
            "them out"
        )
    if missing:
        log.warning("names_file: left out %d names of %s not in the corpus: %s",
                    len(missing), path, _quoted(missing))  # fmt: skip
    if dropped:
        log.warning("names_file: left out %d names of %s that are positives: %s",
                    len(dropped), path, _quoted(dropped))  # fmt: skip
    neg = np.asarray([rows[n] for n in names if n in rows and n not in is_positive], dtype=np.int64)
    if not len(neg):
        raise MinerConfigError(
            f"names_file: no name of {path} is left as a negative ({len(missing)} not in the "
            f"corpus, {len(dropped)} positives)"
        )
    log.info("names_file: %d negatives from %d names of %s", len(neg), len(names), path)
    return LabelSet(
        "names_file",
        inputs.corpus_names,
        negatives=neg,
        stats={
            **stats,
            "n_names_in_file": len(names),
            "names_not_in_corpus": missing,
            "names_that_are_positives": dropped,
        },
        **positives,
    )
