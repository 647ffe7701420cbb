# Input, parameter and target functions of the rules in corpus.smk.
def corpus_spec(wildcards):
    return CORPORA[wildcards.corpus]


def corpus_inputs(wildcards):
    """A word list file, and the indices of datasets whose class names join the corpus."""
    spec = CORPORA[wildcards.corpus]
    return {
        "wordlist": [spec["path"]] if spec["type"] == "wordlist" else [],
        "class_indices": [
            path("index", dataset=ds) for ds in spec.get("add_class_names_of", [])
        ],
    }


def conjugated_prompts(wildcards):
    """CSP's prompt set of the conjugated labels (clustermine.prompts)."""
    from clustermine.prompts import CONJUGATED_PROMPTS

    return CONJUGATED_PROMPTS
