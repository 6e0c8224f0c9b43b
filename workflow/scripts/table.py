"""Rule table: the table's runs → paper_tables/table{N}.md and .csv (mulsupcon_ld.report.tables)."""

from mulsupcon_ld.report.aggregate import collect_runs
from mulsupcon_ld.report.tables import write_table

write_table(
    snakemake.wildcards.table,
    collect_runs(snakemake.input),
    snakemake.output.md,
    snakemake.output.csv,
    tolerance=snakemake.params.tolerance,
    allow_mixed=snakemake.params.allow_mixed,
)
