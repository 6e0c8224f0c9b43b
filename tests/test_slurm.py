"""The workflow on a real SLURM, through ``profiles/slurm`` (issue 6).

A private single-node cluster (tests/slurm_cluster.py: munged + slurmctld + slurmd from the
Debian packages, all state in a temp dir, stopped by PID at the end) unless SLURM is already
running for this user, in which case that one is used as is. Skipped only when the SLURM/munge
binaries are not installed (.ci/install_slurm.sh installs them).

What is checked:

* the smoke-scale workflow (Table 2, yeast, seed 0, synthetic) runs with every job that is not a
  local rule submitted through sbatch, including a training job cancelled mid-run with
  ``scancel``: the profile's ``retries`` resubmit it, it resumes from its checkpoint, the table is
  complete and nothing partial is left behind;
* image-dataset training jobs carry their GPU request (``--gpus=1``, ``TresPerJob=gres:gpu:1``)
  even when a workflow profile brings its own ``set-resources``/``set-threads``;
* a job that fails for a real reason stops the run with its log paths shown, and a bad config
  (unknown dataset) stops it before anything is submitted.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prereq import missing
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from epoch_gate import gate_env, held_runs  # noqa: E402
from slurm_cluster import (  # noqa: E402
    ExistingCluster,
    SlurmCluster,
    SlurmUnavailable,
    existing_cluster,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "local"
SNAKEFILE = REPO / "Snakefile"
CONFIGFILE = REPO / "config" / "config.yaml"
# Smoke scale on the synthetic stand-in: one vector dataset, one seed (the table-2 run: the paper's three methods).
SMOKE = ["synthetic=true", "scale=smoke", "datasets=[yeast]", "seeds=[0]"]
# The profile's first status check comes after 40 s (right for a real cluster); tests poll fast.
FAST = ["--slurm-init-seconds-before-status-checks", "2"]
PAPER_METHODS = ("MulSupCon", "MulSupCon_RLD", "MulSupCon_CLD")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", re.M)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def slurm(request):
    """A SLURM to submit to: the running one, else a private single-node cluster."""
    env = existing_cluster()
    if env is not None:
        yield ExistingCluster(env)
        return
    try:
        cluster = SlurmCluster()
    except SlurmUnavailable as exc:
        missing(f"no SLURM: {exc}")

    def stop():
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)

    request.addfinalizer(stop)
    cluster.start()
    yield cluster


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory) -> Path:
    """Working directory of the smoke run (prepared data reused by later tests)."""
    return tmp_path_factory.mktemp("smoke")


# ------------------------------------------------------------------------------------ helpers

def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Snakemake:
    """``snakemake --profile profiles/slurm`` on the real workflow, in its own working directory."""

    def __init__(self, slurm, workdir: Path, targets: list[str], config: list[str],
                 extra: list[str] = (), name: str = "snakemake", env: dict | None = None):
        self.slurm, self.workdir = slurm, Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{name}.out"
        argv = [sys.executable, "-m", "snakemake", "--profile", str(PROFILE),
                "--snakefile", str(SNAKEFILE), "--configfile", str(CONFIGFILE),
                "--directory", str(self.workdir), *FAST, *extra, *targets]
        if config:
            argv += ["--config", *config]
        self.argv = argv
        self._fh = open(self.log_path, "w")
        # A test runner started in the background by a non-interactive shell hands SIGINT down as
        # *ignored*, and Python then never raises KeyboardInterrupt: restore the default so that
        # interrupt() is the user's Ctrl-C wherever the suite runs.
        self.proc = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**slurm.env, **(env or {})}, cwd=self.workdir,
                                     preexec_fn=_default_sigint)

    @property
    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def submissions(self) -> list[dict]:
        """Every sbatch submission: snakemake job id, SLURM job id, rule, wildcards, SLURM log."""
        out = []
        for sm_id, slurm_id, log in SUBMITTED.findall(self.text):
            rel = Path(log).relative_to(self.workdir / "logs" / "slurm")
            rule = rel.parts[0].removeprefix("rule_")
            out.append({"jobid": sm_id, "slurm_id": slurm_id, "rule": rule,
                        "wildcards": "/".join(rel.parts[1:-1]), "log": Path(log)})
        return out

    def sbatch_calls(self) -> list[str]:
        """The sbatch command lines (needs --verbose)."""
        return [line.split("sbatch call: ", 1)[1].split(" --wrap=")[0]
                for line in self.text.splitlines() if line.startswith("sbatch call: ")]

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"snakemake did not finish within {timeout:.0f}s:\n{self.report()}")
        finally:
            self._fh.flush()

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a user would: snakemake cancels its own SLURM jobs and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def stop(self) -> None:
        """Interrupt snakemake if still running, then make sure none of its jobs is left."""
        self.interrupt()
        self.slurm.cancel([s["slurm_id"] for s in self.submissions()])
        if not self._fh.closed:
            self._fh.close()

    def report(self, tail: int = 60) -> str:
        lines = self.text.splitlines()[-tail:]
        return ("$ " + " ".join(self.argv) + "\n" + "\n".join(lines)
                + "\n" + self.slurm.diagnostics(15))


def run_paths(wd: Path, wildcards: str) -> tuple[Path, Path]:
    """(``mulsupcon-ld run --out`` directory, job log) of a training job, from the wildcards part
    of its SLURM log path (scale_data_method_ablation_alpha_beta_seed; see workflow/rules/train.smk)."""
    from mulsupcon_ld.pipeline.plan import LOG_ROOT, RunKey

    key = RunKey.from_path_parts(*wildcards.split("_"))
    return wd / key.state_dir, wd / LOG_ROOT / f"{key.run_id}.log"


def leftovers(*roots: Path) -> list[Path]:
    """Files that look like an interrupted write (atomic writes use *.partial / *.tmp)."""
    found = []
    for root in roots:
        if root.exists():
            found += [p for p in root.rglob("*") if p.is_file()
                      and (p.name.endswith(".partial") or ".tmp" in p.name)]
    return found


# ------------------------------------------------------------------------------------ profiles
def test_profiles_never_set_gpu_outside_the_rules():
    """GPU requests live in the rules: no profile uses set-resources (a workflow profile's
    set-resources would replace it wholesale) or puts a GPU into default-resources."""
    for prof in (PROFILE, LOCAL_PROFILE):
        data = yaml.safe_load((prof / "config.yaml").read_text())
        assert "set-resources" not in data, prof
        assert not {"gpu", "gpu_model", "gres"} & set(data.get("default-resources") or {}), prof
    slurm = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert slurm["slurm-status-command"] == "squeue"  # no accounting database needed
    assert slurm["retries"] >= 1
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb"} <= set(slurm["default-resources"])
    local = yaml.safe_load((LOCAL_PROFILE / "config.yaml").read_text())
    assert local["resources"]["gpu"] >= 1


def test_image_training_rules_declare_a_gpu(tmp_path):
    """Dry run through both profiles (no cluster needed): image training jobs have gpu=1 plus
    their threads/memory/runtime even with a workflow profile that sets set-resources."""
    wfprof = tmp_path / "wfprofile"
    wfprof.mkdir()
    (wfprof / "config.yaml").write_text(yaml.safe_dump({"set-resources": {"prepare": {"mem_mb": 1000}}}))
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(PROFILE), "--workflow-profile",
         str(wfprof), "--snakefile", str(SNAKEFILE), "--configfile", str(CONFIGFILE),
         "--directory", str(tmp_path), "paper_tables/table4.md", "paper_tables/table2.md",
         "--config", "synthetic=true", "scale=smoke", "datasets=[pascal,yeast]", "image_seeds=[0]",
         "seeds=[0]", "methods=[cld]"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", r.stdout, re.M | re.S)
    train = {m.group(1): body for name, body in jobs if name == "train"
             for m in [re.search(r"data=([\w-]+)", body)] if m}
    assert set(train) == {"pascal-synthetic", "yeast-synthetic"}, r.stdout[-3000:]
    assert re.search(r"resources:.*\bgpu=1\b", train["pascal-synthetic"])
    assert re.search(r"resources:.*\bmem_mb=\d+", train["pascal-synthetic"])
    assert re.search(r"resources:.*\bruntime=\d+", train["pascal-synthetic"])
    assert not re.search(r"\bgpu=[1-9]", train["yeast-synthetic"])
    prepare = [body for name, body in jobs if name == "prepare"]
    assert prepare and all(re.search(r"\bmem_mb=1000\b", b) for b in prepare)


# ------------------------------------------------------------------------------------ cluster
@pytest.mark.timeout(420)
def test_smoke_workflow_on_slurm_survives_a_cancelled_training_job(slurm, smoke_workdir, tmp_path):
    wd = smoke_workdir
    # A smoke run lasts seconds, too short to catch by polling squeue: tests/epoch_gate.py holds
    # every training job after its first checkpoint until the gate opens, so the job cancelled
    # below is provably mid-run. Jobs after the gate opens run straight through.
    gate = tmp_path / "gate"
    gate.mkdir()
    env = gate_env(gate, slurm.env)
    sm = Snakemake(slurm, wd, ["paper_tables/table2.md"], [*SMOKE, "methods=[mulsupcon,rld,cld]"], name="smoke", env=env)
    cancelled = None
    deadline = time.monotonic() + 330
    try:
        while sm.proc.poll() is None and cancelled is None and time.monotonic() < deadline:
            held = held_runs(gate)
            ids = {s["slurm_id"]: s for s in sm.submissions() if s["rule"] == "train"}
            for j in slurm.jobs(ids):
                state_dir, _ = run_paths(wd, ids[j["id"]]["wildcards"]) if j["id"] in ids else (None, None)
                if j["state"] == "RUNNING" and state_dir and state_dir.resolve() in held:
                    assert list(state_dir.glob("state/*.pt")), "held before its first checkpoint"
                    slurm.cancel([j["id"]])
                    cancelled = ids[j["id"]]
                    break
            time.sleep(0.5)
        # open the gate only once SLURM has taken the job off the node
        while cancelled and time.monotonic() < deadline and any(
                j["state"] in ("RUNNING", "COMPLETING") for j in slurm.jobs([cancelled["slurm_id"]])):
            time.sleep(0.5)
        (gate / "open").touch()
        rc = sm.wait(timeout=max(10.0, deadline - time.monotonic()))
    finally:
        (gate / "open").touch()
        sm.stop()
    assert rc == 0, sm.report()
    assert cancelled is not None, "never caught a training job mid-run\n" + sm.report()

    # the cancelled job really was cancelled by SLURM, and the profile's retries resubmitted it
    assert [j["state"] for j in slurm.jobs([cancelled["slurm_id"]])] in (["CANCELLED"], []), sm.report()
    subs = sm.submissions()
    train = [s for s in subs if s["rule"] == "train"]
    again = [s for s in train if s["wildcards"] == cancelled["wildcards"]]
    assert len(again) == 2 and again[0]["slurm_id"] == cancelled["slurm_id"], sm.report()
    assert f"Trying to restart job {cancelled['jobid']}" in sm.text

    # every training run went through sbatch (one submission per run, plus the retry) ...
    results = sorted((wd / "results" / "runs").rglob("metrics.json"))
    assert len(results) == 3, results
    assert {s["wildcards"] for s in train} and len({s["wildcards"] for s in train}) == 3
    assert len(train) == 4
    assert any(s["rule"] == "prepare" for s in subs)
    # ... and left a SLURM log named after its SLURM job id (kept for successful jobs too)
    for s in subs:
        assert s["log"].is_file(), s
        assert s["log"].parent.parent.parent == wd / "logs" / "slurm"
        assert s["log"].name == f"{s['slurm_id']}.log"
    # the snakemake log records the same SLURM job ids
    smk_logs = sorted((wd / ".snakemake" / "log").glob("*.snakemake.log"))
    assert smk_logs and all(f"SLURM jobid {s['slurm_id']}" in smk_logs[-1].read_text() for s in subs)

    # the table is complete: yeast has a number for every method x metric (12 cells)
    rows = [r for r in csv.DictReader(open(wd / "paper_tables" / "table2.csv"))
            if r["dataset"] == "yeast" and r["status"] != "quoted"]
    cells = [r for r in rows if r["method"] in PAPER_METHODS]
    assert len(cells) == 12 and {r["method"] for r in cells} == set(PAPER_METHODS), cells
    # our bce control row was left out of this config's methods: shown as not run
    assert all(r["status"] == "missing" for r in rows if r["method"] not in PAPER_METHODS)
    assert all(r["status"] == "ok" and r["n"] == "1" and float(r["ours_mean"]) >= 0 for r in cells)
    assert (wd / "paper_tables" / "table2.md").is_file()
    for result in results:
        record = json.loads(result.read_text())
        assert isinstance(record.get("metrics"), dict) and record["metrics"], result
    # nothing partial is left looking finished: no temp files, no leftover checkpoints
    assert leftovers(wd / "results", wd / "paper_tables") == []
    assert list((wd / "results" / "state").rglob("state/*.pt")) == []
    # the retried job resumed from the cancelled attempt's checkpoint instead of starting over
    _, log = run_paths(wd, cancelled["wildcards"])
    assert "resuming from" in log.read_text(), log.read_text()


@pytest.mark.timeout(420)
def test_gpu_request_survives_a_workflow_profile(slurm, tmp_path):
    """An image-dataset training job is submitted with its GPU request although a workflow
    profile replaces set-resources/set-threads; on this GPU-less node it stays pending."""
    wfprof = tmp_path / "wfprofile"
    wfprof.mkdir()
    # small enough for the test node's shape; note: neither entry mentions a GPU
    (wfprof / "config.yaml").write_text(yaml.safe_dump({
        "set-resources": {"prepare": {"mem_mb": 1000}, "train": {"mem_mb": 2000}},
        "set-threads": {"train": 2},
    }))
    extra = ["--workflow-profile", str(wfprof), "--retries", "0", "--verbose"]
    if slurm.private:
        # partition auto-selection (profiles/slurm/partitions.example.yaml): GPU jobs → "gpu"
        parts = tmp_path / "partitions.yaml"
        parts.write_text(yaml.safe_dump({"partitions": {
            slurm.partition: {"max_threads": slurm.cpus, "max_mem_mb": slurm.real_memory_mb},
            slurm.gpu_partition: {"max_threads": slurm.cpus, "max_mem_mb": slurm.real_memory_mb,
                                  "max_gpu": 1}}}))
        extra += ["--slurm-partition-config", str(parts)]
    sm = Snakemake(slurm, tmp_path / "wd", ["paper_tables/table4.md"],
                   ["synthetic=true", "scale=smoke", "datasets=[pascal]", "image_seeds=[0]",
                    "methods=[cld]"], extra=extra, name="gpu")
    job = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and sm.proc.poll() is None:
            train = [s for s in sm.submissions() if s["rule"] == "train"]
            if train:
                time.sleep(2)  # let slurmctld evaluate it once
                job = slurm.show_job(train[0]["slurm_id"])
                break
            time.sleep(1)
        assert job, "no training job was submitted\n" + sm.report()
        calls = sm.sbatch_calls()
        train_calls = [c for c in calls if "--comment rule_train" in c]
        prepare_calls = [c for c in calls if "--comment rule_prepare" in c]
        assert train_calls and prepare_calls, sm.report()
        assert "--gpus=1" in train_calls[0], train_calls[0]
        assert "--cpus-per-task=2" in train_calls[0] and "--mem 2000" in train_calls[0]
        assert "--mem 1000" in prepare_calls[0] and "--gpus" not in prepare_calls[0]
        # SLURM itself recorded the GPU request
        assert "gpu:1" in job.get("TresPerJob", ""), job
        if slurm.private:
            assert f"-p {slurm.gpu_partition} " in train_calls[0], train_calls[0]
            assert f"-p {slurm.partition} " in prepare_calls[0], prepare_calls[0]
            assert job["JobState"] == "PENDING", job
            # ... and waits for a GPU node: the only one is the never-running placeholder
            assert job.get("NodeList") in ("", "(null)"), job
        # Ctrl-C: snakemake cancels its own (pending) SLURM job on the way out
        assert sm.interrupt(timeout=180) != 0
        # scancel is asynchronous: give slurmctld a moment on a loaded machine
        deadline = time.monotonic() + 30
        while (states := [j["state"] for j in slurm.jobs([job["JobId"]])]) != ["CANCELLED"] \
                and time.monotonic() < deadline:
            time.sleep(1)
        assert states == ["CANCELLED"], sm.report()
    finally:
        sm.stop()


@pytest.mark.timeout(240)
def test_broken_run_stops_with_its_log_paths(slurm, smoke_workdir, tmp_path):
    """A training run that fails for a real reason stops the workflow, naming the job's own log
    and its SLURM log; no result file is written. (`--retries 0` only to keep the test short: with
    the profile's retries the same failure is simply submitted twice more.)"""
    wd = tmp_path / "wd"
    wd.mkdir()
    for part in ("data", "results/data"):  # reuse the smoke test's prepared data when there
        if (smoke_workdir / part).is_dir():
            shutil.copytree(smoke_workdir / part, wd / part)
    sm = Snakemake(slurm, wd, ["paper_tables/table2.md"],
                   [*SMOKE, "methods=[cld]", "device=no-such-device"], extra=["--retries", "0"],
                   name="broken")
    try:
        rc = sm.wait(timeout=200)
    finally:
        sm.stop()
    assert rc != 0, sm.report()
    train = [s for s in sm.submissions() if s["rule"] == "train"]
    assert len(train) == 1, sm.report()
    assert "Error in rule train" in sm.text
    job_log = re.findall(r"log: (logs/train/\S+\.log)", sm.text)
    assert job_log and (wd / job_log[0]).is_file(), sm.report()
    assert "no-such-device" in (wd / job_log[0]).read_text()
    for s in train:  # each attempt's SLURM log is named in the output and kept
        assert str(s["log"]) in sm.text and s["log"].is_file()
    assert not list((wd / "results" / "runs").rglob("metrics.json"))
    assert not (wd / "paper_tables" / "table2.md").exists()
    assert leftovers(wd / "results", wd / "paper_tables") == []


@pytest.mark.timeout(120)
def test_unknown_dataset_stops_before_submitting(slurm, tmp_path):
    sm = Snakemake(slurm, tmp_path, ["paper_tables/table2.md"],
                   ["synthetic=true", "scale=smoke", "datasets=[nope]"], name="nope")
    try:
        rc = sm.wait(timeout=100)
    finally:
        sm.stop()
    assert rc != 0
    # the config schema's dataset names come from the registry (pipeline/config.py): its enum says no
    assert "'nope' is not one of" in sm.text and "yeast" in sm.text, sm.report()
    assert sm.submissions() == []
    assert "sbatch" not in sm.text
