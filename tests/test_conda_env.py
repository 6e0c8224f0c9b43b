"""The workflow's conda env (envs/mulsupcon.yaml) holds pyproject.toml's dependencies, so its hash follows them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sync_conda_env", ROOT / "scripts" / "sync_conda_env.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)


def test_the_env_files_pip_section_is_pyprojects_dependencies():
    env = yaml.safe_load((ROOT / "envs" / "mulsupcon.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == sync.dependencies() and "torch" in " ".join(pip)
    assert f"python={sync.PYTHON}" in env["dependencies"] and "pip" in env["dependencies"]


def test_the_env_file_is_what_the_script_writes(capsys):
    assert sync.main(["--check"]) == 0, "envs/mulsupcon.yaml is stale: run python scripts/sync_conda_env.py"


def test_a_dependency_added_to_pyproject_makes_the_env_file_stale(tmp_path, monkeypatch):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((ROOT / "pyproject.toml").read_text().replace(
        'dependencies = [\n', 'dependencies = [\n    "rich>=13",\n', 1))
    deps = sync.dependencies(pyproject)
    assert deps[0] == "rich>=13" and sync.env_text(deps) != (ROOT / "envs" / "mulsupcon.yaml").read_text()


def test_the_post_deploy_script_adds_only_the_project():
    """--no-deps: the env is what its file lists (pip would otherwise resolve pyproject's ranges again)."""
    script = (ROOT / "envs" / "mulsupcon.post-deploy.sh").read_text()
    assert "pip install --no-deps --editable" in script
