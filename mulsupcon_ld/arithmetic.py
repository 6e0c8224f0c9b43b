"""What a run computed with — its resolved arithmetic — and the cell key that says which runs may
be combined (one table cell, one side of a claim, one figure bar).

A run's ``metrics.json`` holds an ``arithmetic`` block (:func:`resolved_arithmetic`) and a
``cell_key`` (:func:`cell_key`); ``results/runs.csv`` has one column per field (:data:`COLUMNS`).

* **In the key** (:data:`KEY_FIELDS`): what changes the numbers beyond rounding order — the precision
  actually computed (``auto`` resolved), the pretraining lane, ``flush_denormal``, the reading of
  the loss (eqs. 12–15's options, or ASL's recipe), the torch version, and the code: **the commit**.
  "The same code" is one commit (docs/method.md, "One snapshot, one arithmetic"): simple, checkable
  from the record alone, and a run made before a change that alters numbers can never be averaged
  with one made after it. A tree with uncommitted changes records ``<commit>+dirty``, which matches
  only runs of the same dirty tree state as far as the record can tell; the rebuild of
  ``docs/results`` runs from a clean worktree.
* **Recorded, shown, not in the key** (:data:`SHOWN_FIELDS`): the CPU model, its ISA class and the
  torch threads. fp32 on two CPU models, or with one and two threads, differs per seed only in the
  order of rounding; a rebuild may span sessions on different CPUs. Tables note a cell whose runs
  came from more than one CPU model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from .names import NO_LD_METHODS, NO_PRETRAIN_METHODS
from .settings import LD_READINGS

#: the fields two runs must share to be combined
KEY_FIELDS: tuple[str, ...] = ("precision", "lane", "flush_denormal", "reading", "torch", "code")
#: recorded and shown, but not part of the key (rounding order only)
SHOWN_FIELDS: tuple[str, ...] = ("threads", "cpu_model", "isa_class")
#: runs.csv column of each field
COLUMNS: dict[str, str] = {f: f"arithmetic.{f}" for f in KEY_FIELDS + SHOWN_FIELDS}
#: the fields a claim's two sides must share: the key less what belongs to one method (its lane, when
#: only one side pretrains, and its loss reading)
PAIR_FIELDS: tuple[str, ...] = ("precision", "flush_denormal", "torch", "code")
#: what :func:`resolved_arithmetic` reads from the training process (provenance.run_facts)
FACTS: tuple[str, ...] = ("torch", "code", "threads", "cpu_model", "isa_class")
#: the seed is what a cell varies over; the rest of what the hashes leave out does not change numbers
CELL_EXCLUDED = ("seed",)


def lane(recorded: Mapping[str, Any], method: str) -> str:
    """The pretraining lane of a run's recorded settings: ``fast`` or ``reference`` (``run_settings.RunSettings.fast_lane``'s rule),
    ``none`` for methods that do not pretrain."""
    if method in NO_PRETRAIN_METHODS:
        return "none"
    fast = recorded["pretrain"]["hotpath"] == "fast" or recorded["precision"] == "bf16"
    return "fast" if fast else "reference"


def reading(recorded: Mapping[str, Any], method: str) -> str:
    """The loss reading a run used: for RLD/CLD the options of eqs. 12–15 (``printed``, a name of
    ``settings.LD_READINGS``, or their JSON); for ASL its recipe; ``none`` for MulSupCon and BCE."""
    loss = recorded["loss"]
    if method == "asl":
        a = loss["asl"]
        return (f"asl:{a['reduction']},{a['focal_weights']},gamma_neg={a['gamma_neg']:g},"
                f"gamma_pos={a['gamma_pos']:g},clip={a['clip']:g}")
    if method in NO_LD_METHODS:
        return "none"
    options = loss.get("options")
    if not options:
        return "printed"
    for name, values in LD_READINGS.items():
        if dict(options) == values:
            return name
    return json.dumps(dict(options), sort_keys=True)


def resolved_arithmetic(recorded: Mapping[str, Any], method: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The ``arithmetic`` block of a run whose ``recorded`` settings (``metrics.json``'s dict) hold the precision
    actually computed; ``facts`` (:data:`FACTS`: torch, commit, threads, CPU) are read in the process
    that trains (:func:`mulsupcon_ld.provenance.run_facts`)."""
    if recorded["precision"] not in ("fp32", "bf16"):
        raise ValueError(f"the arithmetic is recorded with the precision resolved, not {recorded['precision']!r}")
    missing = [f for f in FACTS if f not in facts]
    if missing:
        raise ValueError(f"facts of the training process missing: {', '.join(missing)}")
    return {"precision": recorded["precision"], "lane": lane(recorded, method),
            "flush_denormal": bool(recorded["flush_denormal"]), "reading": reading(recorded, method),
            **{f: facts[f] for f in FACTS}}


def cell_key(config: Mapping[str, Any], arithmetic: Mapping[str, Any], excluded: tuple[str, ...] = ()) -> str:
    """Hash of the run's configuration without the seed (nor the dotted ``excluded`` paths: settings
    that do not change numbers) together with the key fields of its arithmetic."""
    c = json.loads(json.dumps(config, default=str))
    for path in CELL_EXCLUDED + tuple(excluded):
        *parents, last = path.split(".")
        node = c
        for k in parents:
            node = node.get(k, {})
        node.pop(last, None)
    keyed = {"config": c, "arithmetic": {f: arithmetic[f] for f in KEY_FIELDS}}
    # provenance.config_hash's recipe, written here so the report layer needs neither torch nor provenance
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]
