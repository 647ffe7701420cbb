# OOD detection: fit one detector per (ID set, method), score every dataset it is tested on in
# one job (one file), and evaluate each ID test set against the ID set's OOD benchmarks. A
# method's settings reach its jobs through params, so editing one method reruns only its files.


rule fit_detector:
    input:
        unpack(fit_detector_inputs),
    output:
        "results/{model}/detectors/{idset}.{method}.h5",
    log:
        "logs/{model}/detectors/{idset}.{method}.log",
    benchmark:
        "benchmarks/{model}/detectors/{idset}.{method}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=240,
    params:
        score=method_score,
        score_params=method_params,
        labels=method_labels,
        seed=config.get("seed", 0),
        device=compute_device,
        budget_bytes=memory_budget_bytes,
    script:
        "../scripts/fit_detector.py"


rule score:
    input:
        unpack(score_inputs),
    output:
        "results/{model}/scores/{idset}.{method}.h5",
    log:
        "logs/{model}/scores/{idset}.{method}.log",
    benchmark:
        "benchmarks/{model}/scores/{idset}.{method}.tsv"
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=60,
    params:
        datasets=scored_datasets,
        device=compute_device,
        budget_bytes=memory_budget_bytes,
    script:
        "../scripts/score.py"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        "results/{model}/metrics/{idset}.{method}.{testset}.json",
    log:
        "logs/{model}/metrics/{idset}.{method}.{testset}.log",
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        benchmarks=idset_benchmarks,
        main_benchmarks=idset_main_benchmarks,
        convention=fpr_convention,
        labels=method_labels,
    script:
        "../scripts/evaluate.py"
