# Tables 2–8 (markdown + CSV of cells), Figure 2, and the diff against the paper. Tables 6 and 8
# read the same runs as 5 and 7; each table needs only its own runs.


rule table:
    input:
        table_results,
    output:
        md=report(
            "paper_tables/table{table}.md",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "Table {table}", "format": "markdown"},
        ),
        csv=report(
            "paper_tables/table{table}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "Table {table}", "format": "CSV"},
        ),
    log:
        "logs/tables/table{table}.log",
    conda:
        ENV
    params:
        tolerance=config["tolerance"],
        allow_mixed=config["allow_mixed"],
    script:
        "../scripts/table.py"


rule figure2:
    input:
        figure2_results,
    output:
        png=report(
            "paper_tables/figure2.png",
            caption="../report/figure2.rst",
            category="Figure 2",
            labels={"figure": "Figure 2", "format": "PNG"},
        ),
        pdf=report(
            "paper_tables/figure2.pdf",
            caption="../report/figure2.rst",
            category="Figure 2",
            labels={"figure": "Figure 2", "format": "PDF"},
        ),
        csv="paper_tables/figure2.csv",
    log:
        "logs/tables/figure2.log",
    conda:
        ENV
    params:
        ablations=config["ablations"],
        allow_mixed=config["allow_mixed"],
    script:
        "../scripts/figure2.py"


rule diff:
    input:
        "results/runs.csv",
    output:
        report("paper_tables/diff.md", caption="../report/diff.rst", category="Diff"),
    log:
        "logs/tables/diff.log",
    conda:
        ENV
    params:
        tolerance=config["tolerance"],
        mixed="--allow-mixed" if config["allow_mixed"] else "",
    shell:
        "mulsupcon-ld diff --runs {input} --tolerance {params.tolerance} {params.mixed} --out {output} > {log} 2>&1"


rule claims:
    input:
        "results/runs.csv",
    output:
        md=report(
            "paper_tables/claims.md",
            caption="../report/claims.rst",
            category="Claims",
            labels={"claims": "claims", "format": "markdown"},
        ),
        csv=report(
            "paper_tables/claims.csv",
            caption="../report/claims.rst",
            category="Claims",
            labels={"claims": "claims", "format": "CSV"},
        ),
        forest=report(
            "paper_tables/claims.png",
            caption="../report/claims.rst",
            category="Claims",
            labels={"claims": "claims", "format": "forest plot"},
        ),
        forest_pdf="paper_tables/claims.pdf",
    log:
        "logs/tables/claims.log",
    conda:
        ENV
    params:
        mixed="--allow-mixed" if config["allow_mixed"] else "",
    shell:
        "mulsupcon-ld claims --runs {input} --out {output.md} --csv {output.csv} {params.mixed} > {log} 2>&1"


rule delta:
    input:
        "results/runs.csv",
    output:
        png=report(
            "paper_tables/delta.png",
            caption="../report/delta.rst",
            category="Diff",
            labels={"figure": "ours − paper", "format": "PNG"},
        ),
        pdf=report(
            "paper_tables/delta.pdf",
            caption="../report/delta.rst",
            category="Diff",
            labels={"figure": "ours − paper", "format": "PDF"},
        ),
    log:
        "logs/tables/delta.log",
    conda:
        ENV
    params:
        allow_mixed=config["allow_mixed"],
    script:
        "../scripts/delta.py"
