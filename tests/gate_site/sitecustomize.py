"""Test-only gate for the kill-and-resume tests (tests/test_slurm.py, tests/test_workflow.py),
loaded through PYTHONPATH by every Python process of a workflow job (sbatch passes the environment
on, as does Snakemake to its local jobs).

When ``MULSUPCON_TEST_GATE`` names a folder, the first pretraining epoch of every ``mulsupcon-ld
run`` ends by writing ``<gate>/<pid>.waiting`` (holding its ``--out`` folder) and then blocks until
``<gate>/open`` exists. It is the experiment's own ``on_epoch_end`` callback (called once the
epoch's checkpoint is on disk), passed by wrapping ``run_experiment`` in the training process only;
so a test can kill or cancel a job that is provably mid-run instead of racing a smoke run that
lasts a few seconds.
"""

import os
import sys
import time
from pathlib import Path

GATE = os.environ.get("MULSUPCON_TEST_GATE")


def _hold(phase: str, epoch: int) -> None:
    if phase != "pretrain" or epoch != 0:
        return
    gate = Path(GATE)
    if (gate / "open").exists():
        return
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else ""
    (gate / f"{os.getpid()}.waiting").write_text(os.path.abspath(out) if out else "")
    while not (gate / "open").exists():
        time.sleep(0.2)


def _install() -> None:
    import dataclasses

    from mulsupcon_ld import experiment

    run = experiment.run_experiment

    def run_with_gate(spec, on_epoch_end=None):
        # a checkpoint at every epoch end (checkpoint_seconds=0; not in the hashes), so the held run has
        # its first one on disk
        if isinstance(spec, experiment.ResolvedRun):
            spec = dataclasses.replace(spec, settings=dataclasses.replace(spec.settings, checkpoint_seconds=0))
        else:
            spec = dataclasses.replace(spec, overrides=(*spec.overrides, "checkpoint_seconds=0"))
        return run(spec, on_epoch_end=_hold)

    experiment.run_experiment = run_with_gate


# only the training process (`python -m mulsupcon_ld.cli run … --out DIR`) pays for importing torch
if GATE and "run" in sys.argv and "--out" in sys.argv:
    _install()
