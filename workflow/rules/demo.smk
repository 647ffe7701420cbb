# The offline demo (docs/demo.md): image folders from Debian/PyPI data, and the demo CLIP model
# trained on them. prepare_demo_split writes one folder per split under demo.root; its declared
# output is a marker file (<root>/.splits/<split>.json, the class counts), written after the
# folder is complete, so a half-written folder never counts as done. The demo's datasets name
# their marker under `requires:` and its model's `pretrained:` is the checkpoint written here:
# the rest of the workflow knows nothing of the demo.


rule prepare_demo_split:
    output:
        demo_split_marker("{split}"),
    log:
        "logs/demo/prepare_demo_split/{split}.log",
    benchmark:
        "benchmarks/demo/prepare_demo_split/{split}.tsv"
    wildcard_constraints:
        split="|".join(demo.SPLITS),
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
        [demo_split_marker(s) for s in (*demo.TRAINING_SPLITS, demo.EVAL_SPLIT)],
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
            PATHS["demo_summary"],
            caption="../report/demo_summary.rst",
            category="Demo",
        ),
        json=PATHS["demo_summary_json"],
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
