"""Rule aggregate: every metrics.json → results/runs.csv (mulsupcon_ld.report.aggregate)."""

from mulsupcon_ld.report.aggregate import aggregate

aggregate(snakemake.input, snakemake.output[0])
