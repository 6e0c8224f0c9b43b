"""Rule prepare: `mulsupcon-ld prepare NAME [--synthetic]` → status file (mulsupcon_ld.pipeline.jobs)."""

from mulsupcon_ld.pipeline.jobs import prepare_job

prepare_job(
    snakemake.wildcards.data,
    snakemake.params.raw_dir,
    snakemake.params.data_dir,
    next(iter(snakemake.input), None),  # the download status; none for synthetic data
    snakemake.output[0],
    snakemake.log[0],
)
