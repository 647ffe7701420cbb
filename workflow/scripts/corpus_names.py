from clustermine.corpus import Corpus, load_corpus, normalize_name, write_corpus_tsv
from clustermine.datasets import read_index
from clustermine.logs import setup_logging

log = setup_logging(snakemake.log[0])
spec = snakemake.params.spec
extra = [
    name for path in snakemake.input.class_indices for name in read_index(path).class_names or []
]
corpus = load_corpus(spec)
if extra:
    known = set(corpus.names)
    added = [n for n in dict.fromkeys(normalize_name(x) for x in extra) if n not in known]
    log.info("adding %d class names not in the corpus: %s", len(added), added[:20])
    corpus = Corpus(
        corpus.names + added,
        corpus.pos + ["class"] * len(added) if corpus.pos else None,
        corpus.synsets + [""] * len(added) if corpus.synsets else None,
    )
log.info("corpus %s: %d names", snakemake.wildcards.corpus, len(corpus))
write_corpus_tsv(snakemake.output[0], corpus)
