# Input, parameter and target functions of the rules in mine.smk.
def zero_shot_file(model, dataset, corpus, prompts):
    return path(
        "zero_shot", model=model, dataset=dataset, corpus=corpus, prompts=prompts
    )


def zero_shot_inputs(wildcards):
    return {
        "images": image_embeddings(wildcards.model, wildcards.dataset),
        "text": text_embeddings(wildcards.model, wildcards.corpus, wildcards.prompts),
        "checked": precomputed_checks(wildcards.dataset),
    }


def density_inputs(wildcards):
    return {
        "text": text_embeddings(wildcards.model, wildcards.corpus, wildcards.prompts)
    }


def label_set_file(model, idset, labelset):
    return path("labels", model=model, idset=idset, labelset=labelset)


def label_set_sidecars(model, idset, labelsets):
    """The JSON sidecars of label sets a job reads whole (`read_label_set`, `read_label_meta`;
    not the report's readers of the table alone). The reader finds a sidecar beside its TSV,
    so a job names both as inputs: where inputs are staged to node-local scratch
    (docs/slurm.md §9) only inputs are copied."""
    return [
        path("label_meta", model=model, idset=idset, labelset=labelset)
        for labelset in dict.fromkeys(labelsets)
        if labelset
    ]


def conjugated_texts(model, idset, labelset):
    """The conjugated-label text file (CSP) of a label set's miner, as a list: empty for a
    miner without the need conjugated_labels. Mining reads it, and so does fitting a detector
    on the label set, whose negatives may be among its labels."""
    seed = CFG.label_set_conjugated_seed(labelset)
    if seed is None:
        return []
    corpus = CFG.idset(idset)["corpus"]
    return [path("conjugated_text", model=model, corpus=corpus, seed=seed)]


def mine_inputs(wildcards):
    """The corpus and ID-train files every miner reads, plus one input per need of its
    catalog entry, one per label set its keys name and one per user file they name (by
    their role in the catalog)."""
    model, idset, labelset = wildcards.model, wildcards.idset, wildcards.labelset
    plugin = CFG.label_set(labelset)[0]
    spec, prompts = CFG.idset(idset), CFG.idset_prompts(idset)
    train, corpus = spec["train"], spec["corpus"]
    inputs = {
        "images": image_embeddings(model, train),
        "text": text_embeddings(model, corpus, prompts),
        "checked": precomputed_checks(train),
        # Y_GT whenever the ID set has it: label quality is measured against it.
        "classes": class_names_input(model, train, prompts),
    }
    if plugin.has("zero_shot"):
        inputs["zeroshot"] = zero_shot_file(model, train, corpus, prompts)
    clustering = CFG.label_set_clustering(labelset)
    if clustering is not None:
        inputs["clusters"] = clusters_file(model, train, *clustering)
    k = CFG.label_set_density_k(labelset)
    if k is not None:
        inputs["density"] = path(
            "text_density", model=model, corpus=corpus, prompts=prompts, k=k
        )
    references = CFG.label_set_references(labelset)
    for key, other in references.items():
        inputs[key] = label_set_file(model, idset, other)
    inputs["label_meta"] = label_set_sidecars(model, idset, references.values())
    conjugated = conjugated_texts(model, idset, labelset)
    if conjugated:
        inputs["conjugated"] = conjugated[0]
    inputs.update(CFG.label_set_files(labelset))
    return inputs


def mine_mem_mb(wildcards, input, attempt):
    # The ID-train embeddings count only for a miner that reads them; the others read
    # their attributes and class names (and the per-image zero-shot and cluster files).
    files = list(input)
    if not CFG.label_set(wildcards.labelset)[0].has("image_embeddings"):
        files.remove(input.images)
    return held_mem_mb(read_mb(wildcards, files), attempt)


def label_set_miner(wildcards):
    return CFG.label_set(wildcards.labelset)[0].name


def label_set_params(wildcards):
    return CFG.label_set(wildcards.labelset)[1]


def label_set_num_clusters(wildcards):
    clustering = CFG.label_set_clustering(wildcards.labelset)
    return None if clustering is None else clustering[1]
