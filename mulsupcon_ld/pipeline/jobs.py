"""Bodies of the workflow's data and training jobs (called by ``workflow/scripts/*.py``).

Each job runs one ``mulsupcon-ld`` command (the CLI contract, in this Python's environment) with
its output appended to the job's log, and writes one small file Snakemake declares as output:

* ``download``/``prepare`` write a *status file*: ``{"status": "ok"}`` or
  ``{"status": "unavailable", "reason": …}``. A dataset whose files are absent and cannot be
  downloaded (the command exits 2 with an ``error:`` line) is *unavailable*, not a failed job, so one
  missing dataset never stops the other tables; any other failure (a crash) fails the job.
* ``train`` runs ``mulsupcon-ld run … --out results/state/<run-id>`` — checkpoints stay there,
  outside the declared outputs, so a killed job resumes when re-run — and then copies
  ``metrics.json`` to the declared ``results/runs/<run-id>/metrics.json`` atomically. For an
  unavailable dataset it writes a result without metrics: ``{"status": "unavailable", "reason": …,
  "metrics": null}``, which the tables show as "—" with the reason. So does a run this machine cannot
  do (:func:`cpu_refusal`: an image run at paper scale without CUDA).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atomic import atomic_path, write_json
from ..cost import guard_image_run
from ..errors import UserError
from ..names import NO_PRETRAIN_METHODS
from ..run_settings import RunSettings
from .plan import NA, OK, UNAVAILABLE, RunKey, config_sets, split_data_name


def run_cli(args: Sequence[str], log: str | os.PathLike, threads: int | None = None) -> tuple[int, str]:
    """Run ``mulsupcon-ld ARGS`` with stdout and stderr appended to ``log``.

    Returns ``(exit status, last "error: …" line without the prefix, or "")``. SIGTERM/SIGINT sent
    to this process are passed on to the command, so a cancelled job stops its training too.
    """
    cmd = [sys.executable, "-m", "mulsupcon_ld.cli", *map(str, args)]
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} $ mulsupcon-ld {' '.join(map(str, args))}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)

        def forward(signum, _frame):
            proc.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            rc = proc.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        fh.write(f"# exit status {rc}\n")
    return rc, _last_error(log)


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):].strip()
    return ""


def _dir_flags(raw_dir: str | None = None, data_dir: str | None = None) -> list[str]:
    flags = []
    if raw_dir:
        flags += ["--raw-dir", str(raw_dir)]
    if data_dir:
        flags += ["--data-dir", str(data_dir)]
    return flags


def _status(rc: int, error: str, what: str, log: str | os.PathLike) -> dict[str, Any]:
    if rc == 0:
        return {"status": OK, "reason": ""}
    if rc == 2:  # UserError: files absent / cannot be downloaded / not preparable
        return {"status": UNAVAILABLE, "reason": error or f"`mulsupcon-ld {what}` failed, see {log}"}
    raise RuntimeError(f"`mulsupcon-ld {what}` crashed (exit status {rc}); see {log}")


def read_status(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def download_job(dataset: str, raw_dir: str | None, out: str, log: str) -> dict[str, Any]:
    """``mulsupcon-ld download NAME`` (pre-staged ``raw_dir`` first) → status file ``out``."""
    rc, err = run_cli(["download", dataset, *_dir_flags(raw_dir)], log)
    status = {"dataset": dataset, "step": "download", "raw_dir": raw_dir, **_status(rc, err, "download", log)}
    write_json(out, status)
    return status


def prepare_job(data: str, raw_dir: str | None, data_dir: str | None, download_status: str | None,
                out: str, log: str) -> dict[str, Any]:
    """``mulsupcon-ld prepare NAME [--synthetic]`` → status file ``out``.

    ``data`` is ``NAME`` or ``NAME-synthetic``. An unavailable download is passed on unchanged.
    """
    dataset, synthetic = split_data_name(data)
    status: dict[str, Any] = {"dataset": dataset, "synthetic": synthetic, "step": "prepare",
                              "data_dir": data_dir}
    if download_status and read_status(download_status)["status"] != OK:
        previous = read_status(download_status)
        status.update(status=UNAVAILABLE, reason=previous["reason"])
    else:
        args = ["prepare", dataset, *(["--synthetic"] if synthetic else []), *_dir_flags(raw_dir, data_dir)]
        status.update(_status(*run_cli(args, log), "prepare", log))
    write_json(out, status)
    return status


def train_job(key: RunKey, settings: RunSettings, prepared_status: str, out: str, log: str,
              raw_dir: str | None = None, data_dir: str | None = None, device: str | None = None,
              threads: int | None = None, strict: bool = False, hotpath: str | None = None,
              precision: str | None = None) -> dict[str, Any]:
    """One training run (see the module docstring); returns what was written to ``out``.
    ``settings``: the run's dataset's, as the workflow resolved them (``plan.RunConfig.settings``).
    ``strict`` (config ``strict``): an unavailable dataset fails the job instead of a placeholder;
    ``hotpath`` (config ``hotpath``): the pretraining lane, passed as ``--set pretrain.hotpath=…``;
    ``precision`` (config ``precision``): every run's, passed as ``--set precision=…``
    (:func:`plan.config_sets`)."""
    prepared = read_status(prepared_status)
    if prepared["status"] != OK:
        return _unavailable(unavailable_record(key, prepared["reason"]), key, out, log, strict)
    refusal = cpu_refusal(key, settings, device)
    if refusal:
        return _unavailable(unavailable_record(key, refusal, what="not run on this machine"), key, out, log, strict)
    args = ["run", *key.cli_args(), "--out", key.state_dir, *_dir_flags(raw_dir, data_dir)]
    if device:
        args += ["--device", device]
    for value in config_sets(settings.kind, key.method not in NO_PRETRAIN_METHODS, hotpath, precision):
        args += ["--set", value]
    found = existing_state(key.state_dir)
    if found:
        with open(log, "a") as fh:
            fh.write(f"# resuming from the state of an earlier attempt: {', '.join(found)}\n")
    rc, err = run_cli(args, log, threads=threads)
    if rc != 0:
        raise RuntimeError(f"`mulsupcon-ld run` failed (exit status {rc}): {err or 'see ' + log}")
    result = Path(key.state_dir) / "metrics.json"
    record = json.loads(result.read_text())
    if not isinstance(record.get("metrics"), dict):
        raise RuntimeError(f"{result} has no metrics; see {log}")
    with atomic_path(out) as tmp:
        shutil.copyfile(result, tmp)
    return record


def cpu_refusal(key: RunKey, settings: RunSettings, device: str | None) -> str:
    """Why this machine cannot run ``key`` (whose dataset's settings are ``settings``; the CPU guard: an
    image run at paper scale without CUDA), or ""; such a run is unavailable here, as a dataset that
    is not, rather than a failed job."""
    try:
        guard_image_run(settings, device, torch.cuda.is_available(), key.synthetic)
    except UserError as exc:
        return str(exc)
    return ""


def _unavailable(record: dict[str, Any], key: RunKey, out: str, log: str, strict: bool) -> dict[str, Any]:
    """Write the placeholder result of an unavailable run (strict: fail the job instead)."""
    if strict:
        raise RuntimeError(f"strict=true: {key.run_id} is unavailable: {record['reason']}")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    Path(log).write_text(f"# not run: {record['reason']}\n")
    write_json(out, record)
    return record


def existing_state(state_dir: str | os.PathLike) -> list[str]:
    """Checkpoints and finished phases a killed attempt left in ``state_dir`` (relative names)."""
    root = Path(state_dir)
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.suffix in (".pt", ".json"))


def unavailable_record(key: RunKey, reason: str, what: str = "dataset not available") -> dict[str, Any]:
    """What an unavailable run records: its parameters and why there is no number."""
    num = (lambda v: None if v == NA else float(v))
    return {
        "dataset": key.dataset, "method": key.method, "seed": key.seed, "alpha": num(key.alpha),
        "beta": num(key.beta), "ablation": key.ablation, "scale": key.scale, "preset": key.preset, "synthetic": key.synthetic,
        "status": UNAVAILABLE, "reason": f"{what}: {reason}", "metrics": None,
    }
