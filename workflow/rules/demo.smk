# The offline demo: image folders from Debian/PyPI data, and the demo CLIP model trained on them
# (docs/demo.md). prepare_demo_data writes one folder per split under demo.root; its declared
# output is the marker file <root>/.prepared (the split counts, as JSON), written last, so a
# half-written set of folders never counts as done. Rules that read the folders depend on the
# marker (common.smk: demo_outputs_for).


def demo_root():
    return os.path.normpath(DEMO.get("root", "resources/demo"))


def demo_train_settings():
    return DEMO.get("train", {})


def demo_data_params(wildcards):
    train = demo_train_settings()
    return {
        "root": demo_root(),
        "seed": config.get("seed", 0),
        "digits_train": train.get("digits_train", 4000),
        "tuxpaint_train_categories": train.get(
            "tuxpaint_train_categories",
            [
                "animals",
                "food",
                "hobbies",
                "household",
                "medical",
                "military",
                "people",
                "plants",
            ],
        ),
    }


def demo_train_params(wildcards):
    train = demo_train_settings()
    return {
        "root": demo_root(),
        "seed": config.get("seed", 0),
        "epochs": train.get("epochs", 4),
        "batch_size": train.get("batch_size", 256),
        "lr": train.get("lr", 0.002),
    }


rule prepare_demo_data:
    output:
        os.path.join(demo_root(), ".prepared"),
    log:
        "logs/demo/prepare_demo_data.log",
    benchmark:
        "benchmarks/demo/prepare_demo_data.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        demo=demo_data_params,
    script:
        "../scripts/prepare_demo_data.py"


rule train_demo_model:
    input:
        os.path.join(demo_root(), ".prepared"),
    output:
        checkpoint="resources/models/demo-minilm.pt",
        summary="resources/models/demo-minilm.json",
    log:
        "logs/models/demo-minilm.log",
    benchmark:
        "benchmarks/models/demo-minilm.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        train=demo_train_params,
    script:
        "../scripts/train_demo_model.py"
