"""Test-only gate for the kill-and-resume tests (tests/test_slurm.py, tests/test_workflow.py),
loaded through PYTHONPATH by every Python process of a workflow job (sbatch passes the environment
on, as does Snakemake to its local jobs).

When ``MULSUPCON_TEST_GATE`` names a folder, the first pretraining epoch of every ``mulsupcon-ld
run`` ends by writing ``<gate>/<pid>.waiting`` (holding its ``--out`` folder) and then blocks until
``<gate>/open`` exists. Its checkpoint is already on disk by then (train.EPOCH_END_HOOK runs after
it is written), so a test can kill or cancel a job that is provably mid-run instead of racing a
smoke run that lasts a few seconds.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import time
from pathlib import Path

GATE = os.environ.get("MULSUPCON_TEST_GATE")
TARGET = "mulsupcon_ld.train"


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


class _SetHook(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports mulsupcon_ld.train as usual, then sets its EPOCH_END_HOOK."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.EPOCH_END_HOOK = _hold


if GATE:
    sys.meta_path.insert(0, _SetHook())
