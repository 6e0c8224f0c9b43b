"""The Snakemake workflow, run for real (subprocess) in a temporary copy of it.

* lint and format;
* dry run of every table target and Figure 2 with the default config: the DAG builds and has the
  expected number of training jobs;
* end to end on synthetic stand-ins at smoke scale (few seeds, reduced dataset list and grid):
  Tables 2, 3, 5, Figure 2, runs.csv, the diff and the HTML report; a second invocation has
  nothing to do;
* real pre-staged data (../shared/data) at smoke scale: Yeast and Scene cells are real, an absent
  dataset is reported as such;
* a training job killed midway resumes from its state when the workflow is re-run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mulsupcon_ld.report import plan

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs")

pytestmark = pytest.mark.slow


def make_workdir(path: Path) -> Path:
    """A copy of the workflow (not the results) so nothing lands in the repository."""
    path.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, path / name)
    return path


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("MULSUPCON_RAW_DIR", "MULSUPCON_DATA_DIR"):
        env.pop(var, None)
    env["MULSUPCON_CACHE_DIR"] = str(workdir / "download-cache")  # never the user's cache
    return env


def snakemake(workdir: Path, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=_env(workdir),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table snakemake prints (rule -> number of jobs)."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    for line in lines[start + 1:]:
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s+(\d+)\s*", line)
        if m:
            counts[m.group(1)] = int(m.group(2))
            if m.group(1) == "total":
                break
    return counts


# ------------------------------------------------------------------------------ lint, DAG


def test_lint_and_format(tmp_path):
    wd = make_workdir(tmp_path / "wf")
    lint = snakemake(wd, "--lint")
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=wd,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.fixture(scope="module")
def default_workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("dry") / "wf")


# default config: 5 vector datasets × 5 seeds, 4 image datasets × 1 seed (image_seeds), 3 methods;
# grid 4 × 4 α, β; 4 ablation variants. "all" counts each shared run once: Table 2's CLD run on
# Scene (PASCAL: Table 4's) is also the grid cell at the default α, β and Figure 2's full CLD.
DRY_RUN_TRAIN_JOBS = {
    "paper_tables/table2.md": 5 * 3 * 5,
    "paper_tables/table3.md": 5 * 3 * 5,
    "paper_tables/table4.md": 4 * 3 * 1,
    "paper_tables/table5.md": 16 * 5,
    "paper_tables/table6.md": 16 * 5,
    "paper_tables/table7.md": 16 * 1,
    "paper_tables/table8.md": 16 * 1,
    "paper_tables/figure2.png": 4 * 5 + 4 * 1,
    "all": 75 + 12 + (80 - 5) + (16 - 1) + 3 * 5 + 3 * 1,
}


@pytest.mark.parametrize("target", list(DRY_RUN_TRAIN_JOBS))
def test_dry_run_job_counts(default_workdir, target):
    out = snakemake(default_workdir, "-n", *([] if target == "all" else [target]))
    counts = job_counts(out.stdout)
    assert counts["train"] == DRY_RUN_TRAIN_JOBS[target]
    # the plan the tables read agrees with the DAG
    rc = plan.RunConfig.from_config({**_default_config(), "datasets": list(plan.DATASET_TITLE)})
    name = "all" if target == "all" else ("figure2" if "figure2" in target else re.sub(r"\D", "", target))
    assert len(plan.runs_for_target(name, rc)) == counts["train"]
    if target == "all":
        assert counts["download"] == counts["prepare"] == 9
        assert counts["table"] == 7 and counts["figure2"] == counts["aggregate"] == counts["diff"] == 1
    if target == "paper_tables/table4.md":  # image datasets ask for a GPU
        assert re.search(r"resources: .*gpu=1", out.stdout)


def _default_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


# ------------------------------------------------------------------------------ synthetic, end to end

SYNTHETIC_TARGETS = ("paper_tables/table2.md", "paper_tables/table3.md", "paper_tables/table5.md",
                     "paper_tables/figure2.png", "paper_tables/diff.md", "results/runs.csv")
# Scene only (PASCAL's ResNet-50 is minutes per run on CPU), 2 seeds, grid reduced to α = 0.1 ×
# β ∈ {0.01, 1} (β = 1 is the default: Table 2's run)
SYNTHETIC_CONFIG = ("--config", "synthetic=true", "scale=smoke", "seeds=[0,1]", "datasets=[scene]",
                    "alphas=[0.1]", "betas=[0.01,1]")


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("synthetic") / "wf")
    dry = snakemake(wd, "-n", *SYNTHETIC_TARGETS, *SYNTHETIC_CONFIG)
    planned = job_counts(dry.stdout)
    snakemake(wd, "--cores", "2", *SYNTHETIC_TARGETS, "--set-threads", "train=1", *SYNTHETIC_CONFIG, timeout=900)
    return wd, planned


def test_synthetic_tables_show_ours_paper_and_mark(synthetic_run):
    wd, _ = synthetic_run
    t2 = (wd / "paper_tables/table2.md").read_text()
    assert "**SYNTHETIC DATA**" in t2 and "0.786 (quoted)" in t2  # LaMP, Yeast, HA
    for table in ("2", "3", "5"):
        cells = pd.read_csv(wd / f"paper_tables/table{table}.csv")
        ours = cells[cells["status"] == "ok"]
        assert len(ours) > 0 and (ours["dataset"] == "scene").all()
        assert ours["text"].str.startswith("SYNTHETIC ").all()
        assert ours["text"].str.contains(r" · paper 0\.\d{3} · ").all()  # the paper's value beside ours
        assert (ours["n"] == 2).all()
        assert (cells.loc[cells["status"] == "missing", "text"].str.startswith("— (not run")).all()
    t5 = pd.read_csv(wd / "paper_tables/table5.csv")
    assert set(t5.loc[t5["status"] == "ok", "panel"]) == {"(c)"}  # α = 0.1
    diff = (wd / "paper_tables/diff.md").read_text()
    assert "## Summary (SYNTHETIC)" in diff and "SYNTHETIC 0." in diff
    for name in ("figure2.png", "figure2.pdf"):
        assert (wd / "paper_tables" / name).stat().st_size > 10_000
    fig = pd.read_csv(wd / "paper_tables/figure2.csv")
    scene, pascal = fig[fig["dataset"] == "scene"], fig[fig["dataset"] == "pascal"]
    assert len(scene) == 4 * 6 and (scene["status"] == "ok").all() and scene["synthetic"].all()
    assert (scene["n"] == 2).all() and (pascal["status"] == "missing").all()


def test_synthetic_runs_csv_one_row_per_job(synthetic_run):
    wd, planned = synthetic_run
    runs = pd.read_csv(wd / "results/runs.csv")
    # Scene: 3 methods + 1 more grid cell + 3 ablation variants, × 2 seeds
    assert planned["train"] == (3 + 1 + 3) * 2 == len(runs)
    assert "download" not in planned and planned["prepare"] == 1  # synthetic: nothing to download
    assert len(list((wd / "results/runs").rglob("metrics.json"))) == len(runs)
    assert runs["run_id"].is_unique and (runs["status"] == "ok").all() and runs["synthetic"].all()
    for col in ("paper.mAP", "val-threshold.mAP", "config_hash", "git_commit", "version.torch", "device",
                "wall_time_s.total"):
        assert runs[col].notna().all(), col


def test_synthetic_second_invocation_does_nothing(synthetic_run):
    wd, _ = synthetic_run
    out = snakemake(wd, "-n", *SYNTHETIC_TARGETS, *SYNTHETIC_CONFIG)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_synthetic_html_report(synthetic_run):
    wd, _ = synthetic_run
    snakemake(wd, "--report", "report.html", *SYNTHETIC_TARGETS, *SYNTHETIC_CONFIG)
    html = (wd / "report.html").read_text(errors="replace")
    assert "table2.md" in html and "figure2.png" in html


# ------------------------------------------------------------------------------ real data


@pytest.mark.skipif(not (SHARED_DATA / "yeast").is_dir() or not (SHARED_DATA / "scene").is_dir(),
                    reason=f"pre-staged Yeast and Scene not found in {SHARED_DATA}")
def test_real_prestaged_data(tmp_path):
    wd = make_workdir(tmp_path / "wf")
    # Mediamill is not pre-staged and needs a manual download: it must be reported, not replaced
    config = ("--config", "scale=smoke", "seeds=[0]", "datasets=[yeast,scene,mediamill]",
              f"raw_dir={SHARED_DATA}")
    snakemake(wd, "--cores", "2", "paper_tables/table2.md", "paper_tables/table3.md", "--set-threads", "train=1",
              *config, timeout=900)
    for table in ("2", "3"):
        md = (wd / f"paper_tables/table{table}.md").read_text()
        assert "SYNTHETIC" not in md
        assert "Mediamill: dataset not available: " in md
        cells = pd.read_csv(wd / f"paper_tables/table{table}.csv")
        ours = cells[cells["status"] != "quoted"]
        real = ours[ours["dataset"].isin(["yeast", "scene"])]
        assert (real["status"] == "ok").all() and not real["synthetic"].any()
        assert real["text"].str.match(r"0\.\d{3} \(n=1\) · paper 0\.\d{3} · ").all()
        media = ours[ours["dataset"] == "mediamill"]
        assert (media["status"] == "unavailable").all() and media["ours_mean"].isna().all()
        assert media["text"].str.startswith("— (dataset not available [").all()
    for name in ("yeast", "scene"):
        meta = json.loads((wd / "data" / name / "meta.json").read_text())
        assert meta["synthetic"] is False
    assert not (wd / "data" / "mediamill-synthetic").exists() and not (wd / "data" / "mediamill").exists()


# ------------------------------------------------------------------------------ kill and resume

SENTINEL = 12345.0


def test_killed_training_job_resumes(tmp_path):
    wd = make_workdir(tmp_path / "wf")
    # Delicious' stand-in: a few seconds per pretraining epoch at smoke scale, time to catch a checkpoint
    config = ("--config", "synthetic=true", "scale=smoke", "seeds=[0]", "datasets=[delicious]", "methods=[cld]")
    args = [sys.executable, "-m", "snakemake", "--cores", "2", "paper_tables/table3.md", *config]
    key = plan.RunKey("delicious", "cld", "none", *plan.main_alpha_beta("delicious", "cld", "smoke"), 0,
                      "smoke", True)
    state = wd / key.state_dir
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(args, cwd=wd, env=_env(wd), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not (state / "state" / "pretrain.pt").exists():
                assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint appeared"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # snakemake, the job and the training process
            proc.wait()
    assert not (wd / key.result).exists() and not (state / "metrics.json").exists()

    # mark the state the killed attempt left, to see whether the re-run uses it
    import torch

    ckpt = state / "state" / "pretrain.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        history = saved["history"]
    else:  # pretraining had just finished
        ckpt = state / "pretrained.pt"
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        history = saved["info"]["history"]
    history["loss"][0] = SENTINEL
    torch.save(saved, ckpt)

    snakemake(wd, "--unlock", *config)  # a killed snakemake leaves its lock
    snakemake(wd, "--cores", "2", "paper_tables/table3.md", *config, timeout=600)
    log = (wd / "logs/train" / f"{key.run_id}.log").read_text()
    assert "resuming from the state of an earlier attempt" in log
    result = json.loads((wd / key.result).read_text())
    assert result["training"]["pretrain"]["loss"][0] == SENTINEL  # the killed attempt's epochs were kept
    from mulsupcon_ld.settings import get_settings

    assert len(result["training"]["pretrain"]["loss"]) == get_settings("delicious", "smoke")["pretrain"]["epochs"]
    cells = pd.read_csv(wd / "paper_tables/table3.csv")
    assert (cells.loc[cells["dataset"] == "delicious", "status"].isin(["ok", "missing"])).all()
    assert (cells.loc[(cells["dataset"] == "delicious") & (cells["method"] == "MulSupCon_CLD"), "status"]
            == "ok").all()
