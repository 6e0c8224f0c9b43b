"""Rule download: `mulsupcon-ld download NAME` → status file (mulsupcon_ld.pipeline.jobs)."""

from mulsupcon_ld.pipeline.jobs import download_job

download_job(
    snakemake.wildcards.dataset,
    snakemake.params.raw_dir,
    snakemake.output[0],
    snakemake.log[0],
)
