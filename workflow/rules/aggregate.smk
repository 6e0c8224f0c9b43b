# results/runs.csv: every run of every target in the config, one row per run.


rule aggregate:
    input:
        all_results,
    output:
        report(
            "results/runs.csv",
            caption="../report/runs.rst",
            category="Runs",
        ),
    log:
        "logs/aggregate.log",
    conda:
        ENV
    script:
        "../scripts/aggregate.py"
