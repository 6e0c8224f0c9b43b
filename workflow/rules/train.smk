# One job per training run: `mulsupcon-ld run … --out results/state/<run-id>` (checkpoints stay
# there, outside the declared output, so a killed job resumes), then metrics.json is copied to
# the declared output atomically. See mulsupcon_ld/pipeline/jobs.py. config raw_dir and device are
# read by the script, not declared as params: changing them must not re-run finished runs (the
# device is recorded in each result).


rule train:
    input:
        prepared=plan.PREPARED_STATUS,
    output:
        f"{plan.RUNS_ROOT}/{plan.RUN_ID}/{METRICS_FILE}",
    log:
        f"{plan.LOG_ROOT}/{plan.RUN_ID}.log",
    conda:
        ENV
    threads: train_threads
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpu,
    params:
        data_dir=config["data_dir"],
    script:
        "../scripts/train.py"
