"""Rule train: `mulsupcon-ld run … --out results/state/<run-id>`, then metrics.json → declared output."""

from mulsupcon_ld.pipeline.jobs import train_job
from mulsupcon_ld.pipeline.plan import RunConfig, RunKey

w = snakemake.wildcards
key = RunKey.from_path_parts(w.scale, w.data, w.method, w.ablation, w.alpha, w.beta, w.seed)
train_job(
    key,
    RunConfig.from_config(snakemake.config).settings[key.dataset],  # resolved once for the job
    snakemake.input.prepared,
    snakemake.output[0],
    snakemake.log[0],
    raw_dir=snakemake.config["raw_dir"],
    data_dir=snakemake.params.data_dir,
    device=snakemake.config["device"],
    hotpath=snakemake.config.get("hotpath"),
    precision=snakemake.config.get("precision"),
    threads=snakemake.threads,
    strict=snakemake.config["strict"],
)
