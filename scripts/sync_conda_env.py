"""Write ``envs/mulsupcon.yaml`` (the workflow's conda env, ``snakemake --sdm conda``) from
``pyproject.toml``: its pip section is the project's dependencies, exactly as pyproject lists them.

    python scripts/sync_conda_env.py          # rewrite the env file
    python scripts/sync_conda_env.py --check  # exit 1 if it is out of date (tests/test_conda_env.py)

Snakemake names a conda env by the hash of its file, so listing the dependencies there (and not only
in pyproject.toml, where the post-deploy script's editable install used to find them) makes a change
of pyproject's dependencies build a new env. The post-deploy script then installs the project itself
with ``--no-deps``: the env holds what its file says.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "envs" / "mulsupcon.yaml"
PYTHON = "3.11"   # the conda env's Python (pyproject: requires-python >= 3.10)

HEADER = """\
# Environment of every rule (`snakemake --sdm conda`). GENERATED from pyproject.toml by
# scripts/sync_conda_env.py: edit pyproject's dependencies, then run that script
# (tests/test_conda_env.py fails while this file differs). The project itself is installed into the
# env by mulsupcon.post-deploy.sh (pip install --no-deps -e of the repository root).
"""


def dependencies(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """``[project] dependencies`` of ``pyproject``, in its order."""
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def env_text(deps: list[str]) -> str:
    """The env file for ``deps``: conda-forge's Python and pip, the dependencies from PyPI."""
    pip = "".join(f"      - {d}\n" for d in deps)
    return (HEADER + "channels:\n  - conda-forge\n  - nodefaults\ndependencies:\n"
            f"  - python={PYTHON}\n  - pip\n  - pip:\n{pip}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if the env file is out of date")
    args = ap.parse_args(argv)
    want = env_text(dependencies())
    if args.check:
        if ENV_FILE.read_text() != want:
            print(f"{ENV_FILE.relative_to(ROOT)} is out of date; run python scripts/sync_conda_env.py",
                  file=sys.stderr)
            return 1
        return 0
    ENV_FILE.write_text(want)
    return 0


if __name__ == "__main__":
    sys.exit(main())
