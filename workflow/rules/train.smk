# One job per training run: `mulsupcon-ld run … --out results/state/<run-id>` (checkpoints stay
# there, outside the declared output, so a killed job resumes), then metrics.json is copied to
# the declared output atomically. See mulsupcon_ld/pipeline/jobs.py. config raw_dir and device are
# read by the script, not declared as params: changing them must not re-run finished runs (the
# device is recorded in each result).


rule train:
    input:
        prepared="results/data/{data}/prepared.json",
    output:
        "results/runs/{scale}/{data}/{method}/{ablation}/a{alpha}_b{beta}/seed{seed}/metrics.json",
    log:
        "logs/train/{scale}/{data}/{method}/{ablation}/a{alpha}_b{beta}/seed{seed}.log",
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
