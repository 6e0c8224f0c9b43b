"""Rule figure2: ablation runs → paper_tables/figure2.png/.pdf/.csv (mulsupcon_ld.report.figure)."""

from mulsupcon_ld.report.aggregate import collect_runs
from mulsupcon_ld.report.figure import write_figure2

write_figure2(
    collect_runs(snakemake.input),
    snakemake.output.png,
    snakemake.output.pdf,
    snakemake.output.csv,
    ablations=snakemake.params.ablations,
    allow_mixed=snakemake.params.allow_mixed,
)
