# Reproduction workflow of "Improving Multi-Label Contrastive Learning by Leveraging Label
# Distribution" (MulSupCon_LD): data → training runs → Tables 2–8, Figure 2, diff against the
# paper. How to run it: docs/workflow.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/tables.smk"


# one summary at the end: what ran, what is unavailable and why, which cells show "—"
# (mulsupcon_ld/pipeline/summary.py); strict=true: an unavailable run fails the workflow
onsuccess:
    _status = summary.report(built_targets(), RUNS, strict=config["strict"])
    if _status:
        raise SystemExit(_status)


onerror:
    summary.report(built_targets(), RUNS, strict=config["strict"])


localrules:
    all,
    download,
    aggregate,
    table,
    figure2,
    diff,
    claims,
    delta,


rule all:
    default_target: True
    input:
        all_cost,
        expand(
            "paper_tables/table{table}.{ext}", table=plan.TABLE_IDS, ext=("md", "csv")
        ),
        "paper_tables/figure2.png",
        "paper_tables/figure2.pdf",
        "paper_tables/diff.md",
        "paper_tables/claims.md",
        "paper_tables/claims.csv",
        "paper_tables/delta.png",
        "paper_tables/delta.pdf",
        "results/runs.csv",
