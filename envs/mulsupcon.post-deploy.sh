#!/usr/bin/env bash
# Install the project (editable, with its pyproject.toml dependencies) into the fresh conda env.
# MULSUPCON_LD_ROOT is set by workflow/rules/common.smk to the repository root.
set -euo pipefail
python -m pip install --editable "${MULSUPCON_LD_ROOT:?must be set by the workflow (workflow/rules/common.smk)}"
