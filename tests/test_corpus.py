import subprocess
import sys

import numpy as np
import pytest

from clustermine.corpus import (
    normalize_name,
    read_corpus_tsv,
    wordlist_corpus,
    wordnet_corpus,
    write_corpus_tsv,
)
from clustermine.prompts import PROMPT_SETS, get_prompts
from clustermine.wordnet import DEBIAN_WORDNET, install_debian_wordnet, lexnames_text


def test_wordnet_counts():
    both = wordnet_corpus(("n", "a"))
    nouns = wordnet_corpus(("n",))
    assert len(both) == 79403
    assert len(nouns) == 67186
    assert both.names[: len(nouns)] == nouns.names
    assert len(set(both.names)) == len(both.names)
    assert all(n == n.lower() and "_" not in n for n in both.names)
    assert "hotdog" in both.names and "golden retriever" in both.names and "red" in both.names
    i = both.names.index("dog")
    assert both.synsets[i] == "dog.n.01" and both.pos[i] == "n"


def test_cli_prints_wordnet(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "clustermine.cli", "corpus", "wordnet", "--pos", "n"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert len(out) == 67186 and out[0] == "entity"


def test_cli_info_describes_an_embedding_file(tmp_path):
    from clustermine.h5io import ImageEmbeddings, write_image_embeddings

    data = ImageEmbeddings(
        np.ones((3, 4), np.float32), np.array([0, 1, -1]), ["a.png", "b.png", "c.png"],
        class_names=["cat", "dog"],
        attrs={"model_arch": "ViT-B-32", "model_pretrained": "openai", "dataset": "pets",
               "unreadable_files": ["bad.png"], "kind": "images"},
    )
    write_image_embeddings(tmp_path / "pets.h5", data)
    run = subprocess.run([sys.executable, "-m", "clustermine.cli", "info", str(tmp_path / "pets.h5")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "model:       ViT-B-32 (openai)" in out and "dataset:     pets" in out
    assert "N x D:       3 x 4" in out and "unreadable:  1 files" in out and "bad.png" in out
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    bad = subprocess.run([sys.executable, "-m", "clustermine.cli", "info", str(tmp_path / "broken.h5")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot read" in bad.stderr


@pytest.mark.skipif(not DEBIAN_WORDNET.joinpath("data.noun").exists(),
                    reason="Debian wordnet-base not installed")
def test_debian_install_writes_lexnames(tmp_path):
    root = install_debian_wordnet(target=tmp_path)
    folder = root / "corpora" / "wordnet"
    lines = (folder / "lexnames").read_text().splitlines()
    assert len(lines) == 45 and lines[3] == "03\tnoun.Tops\t1" and lines[44].startswith("44\tadj.ppl")
    assert (folder / "data.noun").stat().st_size == (DEBIAN_WORDNET / "data.noun").stat().st_size
    assert lexnames_text().count("\n") == 45


def test_wordlist(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# comment\nHot_Dog\n\nhot dog\nGolden  Retriever\tignored column\n")
    corpus = wordlist_corpus(path, extra_names=["tench", "Hot dog"])
    assert corpus.names == ["hot dog", "golden retriever", "tench"]
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        wordlist_corpus(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no names"):
        wordlist_corpus(tmp_path / "empty.txt")


def test_corpus_tsv_round_trip(tmp_path):
    corpus = wordnet_corpus(("a",))
    write_corpus_tsv(tmp_path / "c.tsv", corpus)
    back = read_corpus_tsv(tmp_path / "c.tsv")
    assert back.names == corpus.names and back.synsets == corpus.synsets


def test_prompt_sets():
    assert len(get_prompts("simple")) == 7 and get_prompts("simple")[2] == "a origami {}."
    assert len(get_prompts("openai")) == 80 and len(set(get_prompts("openai"))) == 80
    assert len(get_prompts("ming")) == 5
    assert get_prompts("basic") == ("An image of a {}.",) and get_prompts("nice") == ("the nice {}",)
    assert get_prompts("photo") == ("a photo of a {}.",)
    assert all("{}" in t for ts in PROMPT_SETS.values() for t in ts)
    with pytest.raises(KeyError, match="unknown prompt set 'simpel'"):
        get_prompts("simpel")


def test_normalize_name():
    assert normalize_name("  Great_White  Shark ") == "great white shark"


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\ufeffabrader\nabrader\nzebra\n", encoding="utf-8")
    assert wordlist_corpus(path).names == ["abrader", "zebra"]


def test_a_word_list_that_is_not_utf8_is_named_with_its_line(tmp_path):
    from clustermine.datacheck import check_wordlist

    path = tmp_path / "words.txt"
    path.write_bytes(b"cat\ndog\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"words\.txt:3: not UTF-8 text.*iconv"):
        wordlist_corpus(path)
    check = check_wordlist("words", {"path": str(path)})  # the check reads it the same way
    assert check.status == "ERROR" and "words.txt:3: not UTF-8 text" in check.errors[0]
    path.write_text("\ufeffcat\n\ndog\n", encoding="utf-8")
    assert check_wordlist("words", {"path": str(path)}).found == 2
