# The offline demo: image folders from Debian/PyPI data, and the demo CLIP model trained on them
# (docs/demo.md). prepare_demo_split writes one folder per split under demo.root; its declared
# output is a marker file (<root>/.splits/<split>.json, the class counts), written after the
# folder is complete, so a half-written folder never counts as done. Rules that read a folder
# depend on its marker (common.smk: demo_outputs_for), so adding or changing one split reruns
# only what reads it.

rule prepare_demo_split:
    output:
        os.path.join(demo_root(), ".splits", "{split}.json"),
    log:
        "logs/demo/prepare_demo_split/{split}.log",
    benchmark:
        "benchmarks/demo/prepare_demo_split/{split}.tsv"
    wildcard_constraints:
        split="|".join(DEMO_SPLITS),
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        demo=demo_split_params,
    script:
        "../scripts/prepare_demo_data.py"


rule train_demo_model:
    input:
        [demo_split_marker(s) for s in DEMO_TRAINING_SPLITS + [DEMO_EVAL_SPLIT]],
    output:
        checkpoint=DEMO_CHECKPOINT,
        summary=DEMO_TRAINING_SUMMARY,
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


rule demo_summary:
    input:
        unpack(demo_summary_inputs),
    output:
        md=report(
            "results/demo/summary.md",
            caption="../report/demo_summary.rst",
            category="Demo",
        ),
        json="results/demo/summary.json",
    log:
        "logs/demo/summary.log",
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        benchmark=demo_summary_benchmark,
    script:
        "../scripts/demo_summary.py"
