#!/usr/bin/env bash
# Install the project (editable) into the fresh conda env. Its dependencies are already there: the
# env file lists pyproject.toml's (scripts/sync_conda_env.py), so --no-deps keeps the env exactly
# what that file says. MULSUPCON_LD_ROOT is set by workflow/rules/common.smk to the repository root.
set -euo pipefail
python -m pip install --no-deps --editable "${MULSUPCON_LD_ROOT:?must be set by the workflow (workflow/rules/common.smk)}"
