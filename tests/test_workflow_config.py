"""The workflow's config schema takes its names from the registry; the Snakefile uses public APIs only."""
from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from mulsupcon_ld.names import ABLATIONS, HOTPATHS, METHODS, PRECISIONS, SCALES
from mulsupcon_ld.pipeline.config import config_schema
from mulsupcon_ld.registry import DATASETS
from mulsupcon_ld.settings import PRESETS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
WORKFLOW_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk")),
                  *sorted((ROOT / "workflow").rglob("*.py"))]


def test_the_schema_the_workflow_validates_with_has_the_registrys_names():
    props = config_schema(SCHEMA)["properties"]
    assert props["datasets"]["items"]["enum"] == props["datasets"]["default"] == list(DATASETS)
    assert props["dataset_seeds"]["propertyNames"]["enum"] == list(DATASETS)
    assert props["methods"]["items"]["enum"] == props["methods"]["default"] == list(METHODS)
    assert props["preset"]["enum"] == list(PRESETS)
    assert props["scale"]["enum"] == list(SCALES)
    assert props["ablations"]["items"]["enum"] == props["ablations"]["default"] == list(ABLATIONS)
    assert props["hotpath"]["enum"] == [*HOTPATHS, None] and props["precision"]["enum"] == [*PRECISIONS, None]
    # common.smk validates against exactly this schema
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'wfconfig.config_schema(workflow.source_path("../schemas/config.schema.yaml"))' in common


def test_the_schema_file_writes_no_names_itself(tmp_path):
    """One home: a name list written into the schema file is refused, not silently used."""
    schema = yaml.safe_load(SCHEMA.read_text())
    schema["properties"]["preset"]["enum"] = ["paper"]
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema))
    with pytest.raises(ValueError, match="preset.enum is written out"):
        config_schema(path)


def test_the_shipped_configs_are_valid():
    schema = config_schema(SCHEMA)
    for name in ("config.yaml", "rebuild.yaml"):
        config = {**yaml.safe_load((ROOT / "config" / "config.yaml").read_text()),
                  **yaml.safe_load((ROOT / "config" / name).read_text())}
        jsonschema.validate(config, schema)


@pytest.mark.parametrize("key,value", [("datasets", ["mnist"]), ("methods", ["simclr"]), ("preset", "official"),
                                       ("dataset_seeds", {"mnist": [0]})])
def test_unknown_names_are_refused_by_the_schema(key, value):
    config = {**yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), key: value}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, config_schema(SCHEMA))


def test_the_workflow_imports_no_snakemake_internals():
    """Only snakemake's documented modules (snakemake.utils, snakemake.exceptions); never the CLI's parser."""
    for path in WORKFLOW_FILES:
        text = path.read_text()
        assert "snakemake.cli" not in text and "get_argument_parser" not in text, path
        for module in re.findall(r"^\s*(?:from|import)\s+(snakemake[\w.]*)", text, flags=re.M):
            assert module in ("snakemake.utils", "snakemake.exceptions"), (path, module)


def test_the_preset_separator_has_one_home():
    """plan.PRESET_SEP is the only spelling of the separator in the workflow."""
    for path in WORKFLOW_FILES:
        assert '"+"' not in path.read_text() and "'+'" not in path.read_text(), path
