"""Rule delta: results/runs.csv → paper_tables/delta.png and .pdf (mulsupcon_ld.report.delta)."""

from mulsupcon_ld.report.runs_table import read_runs
from mulsupcon_ld.report.delta import write_delta

write_delta(read_runs(snakemake.input[0]), snakemake.output.png, snakemake.output.pdf,
            allow_mixed=snakemake.params.allow_mixed)
