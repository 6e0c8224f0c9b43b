"""Environment for the epoch gate (tests/gate_site/sitecustomize.py): workflow jobs started with it
hold every training run after its first pretraining checkpoint until ``<gate>/open`` exists."""

from __future__ import annotations

import os
from pathlib import Path

SITE = Path(__file__).resolve().parent / "gate_site"


def gate_env(gate: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` plus the gate: its folder, and gate_site first on PYTHONPATH."""
    path = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    return {**env, "MULSUPCON_TEST_GATE": str(gate), "PYTHONPATH": path}


def held_runs(gate: Path) -> set[Path]:
    """``--out`` folders of the runs now waiting at the gate (absolute, resolved)."""
    return {Path(f.read_text()).resolve() for f in gate.glob("*.waiting")}
