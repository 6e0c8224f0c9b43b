# download → prepare, one job each per dataset. Their outputs are status files
# ({"status": "ok"} or {"status": "unavailable", "reason": …}); the prepared data itself lives in
# config data_dir (the library's prepared format), shared by every run of the dataset.


rule download:
    output:
        plan.DOWNLOAD_STATUS,
    log:
        "logs/download/{dataset}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=data_runtime,
    params:
        raw_dir=config["raw_dir"],
    script:
        "../scripts/download.py"


rule prepare:
    input:
        download=download_status,
    output:
        plan.PREPARED_STATUS,
    log:
        "logs/prepare/{data}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=data_runtime,
    params:
        raw_dir=config["raw_dir"],
        data_dir=config["data_dir"],
    script:
        "../scripts/prepare.py"
