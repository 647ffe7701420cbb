# OOD detection: fit one detector per (ID set, method), score every dataset it is tested on in
# one job (one file), and evaluate its ID test sets against the ID set's OOD benchmarks in one
# job (one metrics file per detector, a record per ID test set). A
# method's parameters reach its jobs through params, so editing one method reruns only its
# files; what a score reads is declared in the plugin catalog.


rule fit_detector:
    input:
        unpack(fit_detector_inputs),
    output:
        PATHS["detector"],
    log:
        log_path("detector"),
    benchmark:
        benchmark_path("detector")
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=fit_detector_mem_mb,
        runtime=240,
        device=DEVICE,
        budget_mb=BUDGET_MB,
    params:
        score=method_score,
        score_params=method_params,
        labels=method_labels,
        calibration=calibration_dataset,
    script:
        "../scripts/fit_detector.py"


rule score:
    input:
        unpack(score_inputs),
    output:
        PATHS["scores"],
    log:
        log_path("scores"),
    benchmark:
        benchmark_path("scores")
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=score_mem_mb,
        runtime=60,
        device=DEVICE,
        budget_mb=BUDGET_MB,
    params:
        datasets=scored_datasets,
        tests=idset_tests,
    script:
        "../scripts/score.py"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        PATHS["metrics"],
    log:
        log_path("metrics"),
    benchmark:
        benchmark_path("metrics")
    conda:
        "../envs/clustermine.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tests=idset_tests,
        benchmarks=idset_benchmarks,
        main_benchmarks=idset_main_benchmarks,
        convention=fpr_convention,
        labels=method_labels,
    script:
        "../scripts/evaluate.py"


# Re-mining a fitted detector from deployment images (config section deployments,
# docs/deploy.md): the new detector, its concept diff, and the old and new detector compared
# on the ID set's benchmarks.
rule remine_deployment:
    input:
        unpack(deployment_inputs),
    output:
        detector=PATHS["deployment"],
        diff=PATHS["deployment_diff"],
        summary=PATHS["deployment_summary"],
    log:
        log_path("deployment"),
    benchmark:
        benchmark_path("deployment")
    conda:
        "../envs/clustermine.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=embeddings_mem_mb,
        runtime=60,
        device=DEVICE,
    params:
        datasets=deployment_datasets,
        settings=deployment_settings,
        convention=deployment_convention,
    script:
        "../scripts/remine_deployment.py"
