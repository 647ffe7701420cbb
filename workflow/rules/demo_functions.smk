# Input, parameter and target functions of the rules in demo.smk.
from clustermine import demo

DEMO = config.get("demo") or {}
DEMO_ROOT = os.path.normpath(DEMO.get("root", "resources/demo"))
DEMO_CHECKPOINT = "resources/models/demo-minilm.pt"
DEMO_TRAINING_SUMMARY = "resources/models/demo-minilm.json"


def demo_split_marker(split):
    return path("demo_split", root=DEMO_ROOT, split=split)


def demo_split_params(wildcards):
    """Only the settings a split depends on, so changing one reruns only the splits it shapes."""
    train = DEMO.get("train") or {}
    params = {"root": DEMO_ROOT, "split": wildcards.split, "seed": CFG.seed}
    if wildcards.split.startswith("digits-") and "digits_train" in train:
        params["digits_train"] = train["digits_train"]
    if wildcards.split.startswith("tuxpaint-") and "tuxpaint_train_categories" in train:
        params["tuxpaint_train_categories"] = train["tuxpaint_train_categories"]
    return params


def demo_train_params(wildcards):
    train = DEMO.get("train") or {}
    return {
        "root": DEMO_ROOT,
        "seed": CFG.seed,
        **{k: train[k] for k in ("epochs", "batch_size", "lr") if k in train},
        "training_splits": list(demo.TRAINING_SPLITS),
        "eval_split": demo.EVAL_SPLIT,
    }


def demo_summary_spec():
    """Whose numbers the summary sets against the demo's bars: demo.summary's method and
    benchmark, in the main ID set, for demo.summary.model (default: the report's main model).
    """
    summary = DEMO.get("summary") or {}
    idset = CFG.main_idset()
    if not DEMO.get("enabled") or idset is None:
        return None
    spec = {
        "model": summary.get("model", CFG.main_model()),
        "idset": idset,
        "method": summary.get("method", "clustermine"),
        "benchmark": summary.get("benchmark", "digits-heldout"),
    }
    if spec["method"] not in CFG.idset_methods(idset):
        return None
    if spec["benchmark"] not in CFG.idset_benchmarks(idset):
        return None
    return spec


def demo_targets():
    return [PATHS["demo_summary"]] if demo_summary_spec() else []


def demo_summary_inputs(wildcards):
    spec = demo_summary_spec()
    model, idset, method = spec["model"], spec["idset"], spec["method"]
    return {
        "training": DEMO_TRAINING_SUMMARY,
        "labels": label_set_file(model, idset, CFG.method(method)[2]),
        "metrics": path(
            "metrics",
            model=model,
            idset=idset,
            method=method,
        ),
        "index": path("index", dataset=CFG.idset(idset)["train"]),
    }


def demo_summary_benchmark(wildcards):
    return demo_summary_spec()["benchmark"]
