"""Locate and open WordNet 3.0 offline (docs/corpora.md).

Order: nltk's data path; else the Debian ``wordnet-base`` files (``/usr/share/wordnet``),
copied into a cache folder laid out as nltk expects, with the ``lexnames`` file that Debian
leaves out; else nltk's downloader when online; else a clear error.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

DEBIAN_WORDNET = Path("/usr/share/wordnet")
_DB_FILES = [
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")
] + ["adj.exc", "adv.exc", "noun.exc", "verb.exc"]

# WordNet 3.0 lexicographer files (wninput(5WN)); nltk reads them from ``lexnames``.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class WordNetNotFound(RuntimeError):
    pass


def cache_dir() -> Path:
    base = os.environ.get("CLUSTERMINE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "clustermine"
    )
    return Path(base)


def lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n"
        for i, name in enumerate(_LEXNAMES)
    )


def install_debian_wordnet(source: Path = DEBIAN_WORDNET, target: Path | None = None) -> Path:
    """Copy the Debian WordNet database into an nltk-style folder; return the nltk data root."""
    root = target or cache_dir() / "nltk_data"
    folder = root / "corpora" / "wordnet"
    if (folder / "lexnames").exists() and all((folder / f).exists() for f in _DB_FILES):
        return root
    missing = [f for f in _DB_FILES if not (source / f).exists()]
    if missing:
        raise WordNetNotFound(f"{source}: incomplete WordNet database, missing {missing}")
    tmp = folder.with_name(f".wordnet.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # nltk refuses symlinks that leave its root, so the files are copied (about 30 MB).
    for name in _DB_FILES:
        shutil.copyfile(source / name, tmp / name)
    (tmp / "lexnames").write_text(lexnames_text())
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    log.info("WordNet: copied the Debian database from %s to %s", source, folder)
    return root


@functools.cache
def open_wordnet():
    """Return an nltk WordNet 3.0 reader, found offline where possible."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _Reader(WordNetCorpusReader):
        # The database is WordNet 3.0 itself: no sense-key mapping to another version is
        # needed (and Debian ships no index.sense to build one from).
        def map_wn(self, version="wordnet"):
            return None

        def __init__(self, root, omw_reader):
            with warnings.catch_warnings():  # "multilingual functions not available": fine
                warnings.simplefilter("ignore", UserWarning)
                super().__init__(root, omw_reader)

    cached = str(cache_dir() / "nltk_data")
    if cached not in nltk.data.path:
        nltk.data.path.append(cached)
    try:
        path = nltk.data.find("corpora/wordnet")
        log.info("WordNet: using nltk data at %s", path)
        return _Reader(path, None)
    except LookupError:
        pass
    if DEBIAN_WORDNET.joinpath("data.noun").exists():
        install_debian_wordnet()
        return _Reader(nltk.data.find("corpora/wordnet"), None)
    try:
        if nltk.download("wordnet", quiet=True, raise_on_error=True):
            return _Reader(nltk.data.find("corpora/wordnet"), None)
    except Exception as err:  # noqa: BLE001 - any download failure means "not available"
        log.debug("nltk download failed: %s", err)
    raise WordNetNotFound(
        "WordNet 3.0 not found. Install it with `apt-get install wordnet-base` (Debian/Ubuntu) "
        "or `python -m nltk.downloader wordnet` (online), or point NLTK_DATA at a folder "
        "holding corpora/wordnet."
    )
