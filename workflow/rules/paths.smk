# Every output path of the workflow, once: rules name their outputs with PATHS[...] and input
# functions format the same templates, so a path is spelt in one place. Every path under
# results/ carries the model slug, so one model's branch is independent of the others.

PATHS = {
    # pre-flight (embed.smk): fetched weights (a marker per architecture and tag), data checks
    "weights": "resources/weights/fetched/{arch}/{tag}.json",
    "data_check": "resources/checked/{dataset}.tsv",
    # every check passed: the table of all of them (every data-reading and GPU job needs it)
    "preflight": "resources/preflight.tsv",
    # embed
    "index": "resources/index/{dataset}.tsv",
    "image_shard": "results/{model}/images/shards/{dataset}.{shard}-of-{nshards}.h5",
    "images": "results/{model}/images/{dataset}.h5",
    # other image features, for the scores that need them: "local" (local patch features)
    # or "views/<corruption>-<severity>" (the embeddings of a corrupted view)
    "feature_shard": "results/{model}/{features}/shards/{dataset}.{shard}-of-{nshards}.h5",
    "features": "results/{model}/{features}/{dataset}.h5",
    # corpus
    "corpus_names": "resources/corpus/{corpus}.tsv",
    "text": "results/{model}/text/{corpus}.{prompts}.h5",
    "class_text": "results/{model}/text/classes/{dataset}.{prompts}.h5",
    # CSP's conjugated labels of a corpus's adjectives (superclass words drawn with the seed)
    "conjugated_names": "resources/corpus/conjugated/{corpus}.s{seed}.tsv",
    "conjugated_text": "results/{model}/text/conjugated/{corpus}.s{seed}.h5",
    # cluster
    "knn": "results/{model}/knn/{dataset}.{graph}.h5",
    "clusters": "results/{model}/clusters/{dataset}.{clusterer}-C{C}.h5",
    "sweep": "results/{model}/clusters/sweeps/{idset}.{clusterer}.tsv",
    # mine
    "zero_shot": "results/{model}/zeroshot/{dataset}.{corpus}.{prompts}.h5",
    "text_density": "results/{model}/text/density/{corpus}.{prompts}.k{k}.h5",
    "labels": "results/{model}/labels/{idset}.{labelset}.tsv",
    "label_meta": "results/{model}/labels/{idset}.{labelset}.json",
    # score
    "detector": "results/{model}/detectors/{idset}.{method}.h5",
    "scores": "results/{model}/scores/{idset}.{method}.h5",
    "metrics": "results/{model}/metrics/{idset}.{method}.json",
    # a detector re-mined from deployment images, its concept diff and its old-vs-new summary
    "deployment": "results/{model}/deployments/{deployment}.h5",
    "deployment_diff": "results/{model}/deployments/{deployment}.diff.tsv",
    "deployment_summary": "results/{model}/deployments/{deployment}.summary.tsv",
    # report
    "table": "results/tables/{table}.{fmt}",
    "metrics_long": "results/tables/metrics_long.tsv",
    "plot": "results/plots/{figure}.png",
    # thumbnails of the clusters, the mined positives and each detector's mistakes
    "gallery": "results/{model}/gallery/{idset}.html",
    # demo
    "demo_split": "{root}/.splits/{split}.json",
    "demo_summary": "results/demo/summary.md",
    "demo_summary_json": "results/demo/summary.json",
}


def path(name, **wildcards):
    """PATHS[name] with its wildcards filled in."""
    return PATHS[name].format(**wildcards)


def _beside(name, folder, suffix):
    stem = os.path.splitext(PATHS[name])[0].split("/", 1)[
        1
    ]  # without results/ or resources/
    return f"{folder}/{stem}{suffix}"


def log_path(name):
    """Log file of the job writing PATHS[name], the same path under logs/."""
    return _beside(name, "logs", ".log")


def benchmark_path(name):
    """Benchmark file of the job writing PATHS[name], the same path under benchmarks/."""
    return _beside(name, "benchmarks", ".tsv")
