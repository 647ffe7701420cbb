# Input, parameter and target functions of the rules in cluster.smk.
def knn_inputs(wildcards):
    return {
        "images": image_embeddings(wildcards.model, wildcards.dataset),
        "checked": precomputed_checks(wildcards.dataset),
    }


def cluster_inputs(wildcards):
    """The images, plus what the clusterer's catalog entry needs: a kNN graph, or a label set
    with the text embeddings its positives index."""
    model, dataset = wildcards.model, wildcards.dataset
    inputs = knn_inputs(wildcards)
    graph = CFG.knn_graph(wildcards.clusterer)
    if graph is not None:
        inputs["knn"] = path("knn", model=model, dataset=dataset, graph=graph)
    names = CFG.clusterer_label_set(wildcards.clusterer, dataset)
    if names is not None:
        idset, labelset = names
        spec, prompts = CFG.idset(idset), CFG.idset_prompts(idset)
        inputs["labels"] = label_set_file(model, idset, labelset)
        inputs["label_meta"] = label_set_sidecars(model, idset, [labelset])
        inputs["text"] = text_embeddings(model, spec["corpus"], prompts)
        inputs["classes"] = class_names_input(model, spec["train"], prompts)
    return inputs


def clusterer_method(wildcards):
    return CFG.clusterer(wildcards.clusterer)[0].name


def clusterer_params(wildcards):
    return CFG.clusterer(wildcards.clusterer)[1]


def clustering_mem_mb(wildcards, input, attempt):
    # k-means, TEMI and the kNN hold the embeddings once (normalised or z-scored in place):
    # twice the inputs leaves room for TEMI's heads and one batch's logits (at 1.28M x 1024,
    # C = 4000: 6.3 GB k-means, 7.0 GB kNN, 11.1 GB TEMI against 13 to 15 GB asked for;
    # docs/performance.md). A clusterer may declare more copies in the catalog.
    copies = 2
    if hasattr(wildcards, "clusterer"):
        copies = CFG.clusterer(wildcards.clusterer)[0].memory_copies
    return held_mem_mb(read_mb(wildcards, input), attempt, copies)


def clusters_file(model, dataset, clusterer, C):
    return path("clusters", model=model, dataset=dataset, clusterer=clusterer, C=C)


def sweep_inputs(wildcards):
    spec = CFG.idset(wildcards.idset)
    values = (spec.get("cluster_sweep") or {}).get(wildcards.clusterer)
    if not values:
        raise ValueError(
            f"config: idsets.{wildcards.idset}.cluster_sweep has no list of C for clusterer "
            f"'{wildcards.clusterer}'"
        )
    train, model = spec["train"], wildcards.model
    return {
        "images": image_embeddings(model, train),
        "checked": precomputed_checks(train),
        # The zero-shot labels are cached by the mining stage (mine.smk).
        "zeroshot": zero_shot_file(
            model, train, spec["corpus"], CFG.idset_prompts(wildcards.idset)
        ),
        "clusters": [
            clusters_file(model, train, wildcards.clusterer, c) for c in sorted(values)
        ],
    }


def sweep_keys():
    """(model, idset, clusterer) of every cluster sweep of every ID set and model."""
    return [
        [model, idset, clusterer]
        for idset, spec in IDSETS.items()
        for clusterer in spec.get("cluster_sweep") or {}
        for model in CFG.idset_models(idset)
    ]


def cluster_sweep_targets():
    return [path("sweep", model=m, idset=i, clusterer=c) for m, i, c in sweep_keys()]
