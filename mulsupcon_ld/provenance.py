"""What every result row records about where it came from."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .machine import cpu_description, cpu_model, isa_class

_PACKAGES = ("mulsupcon-ld", "torch", "torchvision", "numpy", "scikit-learn", "pandas", "h5py")


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_commit() -> str:
    """Commit of the source tree this package runs from, ``+dirty`` if modified; ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers, plus Python's."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_description(device: str) -> str:
    """Human-readable device name, e.g. ``cuda:0 (NVIDIA H100)`` or ``cpu (x86_64, 2 threads)``."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def run_facts() -> dict[str, Any]:
    """What this training process computes with beyond its settings (arithmetic.FACTS): torch's
    version, the code's commit, torch's thread count, the CPU model and its ISA class."""
    import torch

    return {"torch": torch.__version__, "code": git_commit(), "threads": torch.get_num_threads(),
            "cpu_model": cpu_model(), "isa_class": isa_class()}


def provenance(config: dict[str, Any], device: str) -> dict[str, Any]:
    """The provenance block of a result file."""
    return {
        "config": config,
        "config_hash": config_hash(config),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": device_description(device),
        "cpu": cpu_description(),   # the CPU model decides the last bits (same seed, same CPU model -> same numbers)
        "host": platform.node(),
    }
