# Input, parameter and target functions of the rules in mine.smk.
def zero_shot_file(model, dataset, corpus, prompts):
    return path(
        "zero_shot", model=model, dataset=dataset, corpus=corpus, prompts=prompts
    )


def zero_shot_inputs(wildcards):
    return {
        "images": image_embeddings(wildcards.model, wildcards.dataset),
        "text": text_embeddings(wildcards.model, wildcards.corpus, wildcards.prompts),
    }


def density_inputs(wildcards):
    return {
        "text": text_embeddings(wildcards.model, wildcards.corpus, wildcards.prompts)
    }


def label_set_file(model, idset, labelset):
    return path("labels", model=model, idset=idset, labelset=labelset)


def mine_inputs(wildcards):
    """The corpus and ID-train files every miner reads, plus what its catalog entry needs."""
    model, idset = wildcards.model, wildcards.idset
    plugin, _, keys = CFG.label_set(wildcards.labelset)
    spec, prompts = CFG.idset(idset), CFG.idset_prompts(idset)
    train, corpus = spec["train"], spec["corpus"]
    inputs = {
        "images": image_embeddings(model, train),
        "text": text_embeddings(model, corpus, prompts),
        # Y_GT whenever the ID set has it: label quality is measured against it.
        "classes": class_names_input(model, train, prompts),
    }
    if plugin.has("zero_shot"):
        inputs["zeroshot"] = zero_shot_file(model, train, corpus, prompts)
    if plugin.has("clusters"):
        inputs["clusters"] = clusters_file(model, train, keys["clusterer"], keys["C"])
    if plugin.has("text_density"):
        k1 = plugin.resolve(CFG.label_set(wildcards.labelset)[1])["k1"]
        inputs["density"] = path(
            "text_density", model=model, corpus=corpus, prompts=prompts, k=k1
        )
    if "match_positives_of" in keys:
        inputs["match"] = label_set_file(model, idset, keys["match_positives_of"])
    if "positives_of" in keys:
        inputs["positives"] = label_set_file(model, idset, keys["positives_of"])
    return inputs


def label_set_miner(wildcards):
    return CFG.label_set(wildcards.labelset)[0].name


def label_set_params(wildcards):
    return CFG.label_set(wildcards.labelset)[1]


def label_set_num_clusters(wildcards):
    return CFG.label_set(wildcards.labelset)[2].get("C")
