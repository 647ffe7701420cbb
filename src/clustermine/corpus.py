"""Text corpora: the candidate label names that mining chooses from (DESIGN §7)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .text_lines import read_lines

WORDNET_POS = {"n": "n", "a": "a"}  # adjective satellites ('s') come with 'a'


@dataclass
class Corpus:
    names: list[str]
    pos: list[str] | None = None
    synsets: list[str] | None = None

    def __len__(self) -> int:
        return len(self.names)


def normalize_name(name: str) -> str:
    """How names are matched everywhere: underscores to spaces, lower case, whitespace
    collapsed."""
    return " ".join(str(name).replace("_", " ").lower().split())


def wordnet_corpus(pos: Sequence[str] = ("n", "a")) -> Corpus:
    """WordNet 3.0, first lemma of each synset, deduplicated in synset order.

    Nouns + adjectives (satellites included) give 79,403 names; nouns alone 67,186.
    """
    from .wordnet import open_wordnet

    unknown = [p for p in pos if p not in WORDNET_POS]
    if unknown or not pos:
        raise ValueError(f"wordnet corpus: unknown pos {unknown or pos}; use any of n, a")
    wn = open_wordnet()
    names: list[str] = []
    tags: list[str] = []
    synsets: list[str] = []
    seen: set[str] = set()
    for p in pos:
        for synset in wn.all_synsets(WORDNET_POS[p]):
            name = normalize_name(synset.lemmas()[0].name())
            if name in seen:
                continue
            seen.add(name)
            names.append(name)
            tags.append(p)
            synsets.append(synset.name())
    return Corpus(names, tags, synsets)


def read_names(
    path: str | Path, extra_names: Iterable[str] = (), what: str = "wordlist corpus"
) -> list[str]:
    """The names of a word-list file, normalised (:func:`normalize_name`), each once, in file
    order: one name per line, the first tab-separated column; blank lines and ``#`` comments
    skipped; then the optional extra names. UTF-8, a byte-order mark at the start dropped;
    other bytes are an error naming the line. ``what`` names the file in errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    names: list[str] = []
    seen: set[str] = set()
    lines = read_lines(path, "word list")
    for raw in [*lines, *extra_names]:
        line = raw.split("\t")[0].strip()
        if not line or line.startswith("#"):
            continue
        name = normalize_name(line)
        if name not in seen:
            seen.add(name)
            names.append(name)
    if not names:
        raise ValueError(f"{what}: {path} holds no names (one name per line)")
    return names


def wordlist_corpus(path: str | Path, extra_names: Iterable[str] = ()) -> Corpus:
    """A word-list file (:func:`read_names`) plus optional extra names."""
    return Corpus(read_names(path, extra_names))


def load_corpus(spec: dict, extra_names: Iterable[str] = ()) -> Corpus:
    """Build a corpus from its config entry (``type: wordnet|wordlist``)."""
    kind = spec.get("type")
    if kind == "wordnet":
        return wordnet_corpus(tuple(spec.get("pos", ("n", "a"))))
    if kind == "wordlist":
        return wordlist_corpus(spec["path"], extra_names)
    raise ValueError(f"unknown corpus type {kind!r}; use wordnet, wordlist or embeddings")


def write_corpus_tsv(path: str | Path, corpus: Corpus) -> None:
    from .atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("name\tpos\tsynset\n")
        for i, name in enumerate(corpus.names):
            pos = corpus.pos[i] if corpus.pos else ""
            syn = corpus.synsets[i] if corpus.synsets else ""
            f.write(f"{name}\t{pos}\t{syn}\n")


def read_corpus_tsv(path: str | Path) -> Corpus:
    rows = Path(path).read_text(encoding="utf-8").splitlines()
    if not rows or rows[0].split("\t")[0] != "name":
        raise ValueError(f"{path}: not a corpus table (header 'name<TAB>pos<TAB>synset')")
    names, pos, syn = [], [], []
    for row in rows[1:]:
        cols = (row.split("\t") + ["", ""])[:3]
        names.append(cols[0])
        pos.append(cols[1])
        syn.append(cols[2])
    return Corpus(names, pos if any(pos) else None, syn if any(syn) else None)
