"""The workflow config's schema with the names filled in from their one home, and ``--config`` coercion.

``workflow/schemas/config.schema.yaml`` documents every key but lists no dataset, method, preset,
scale, ablation, lane or precision names: :func:`config_schema` fills them in from the registry
(``registry.DATASETS``, ``names``, ``settings.PRESETS``) before the Snakefile validates the config,
so a name added there is accepted here with nothing else to edit, and a name that does not exist is
refused by the validation (not later, by a job).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import yaml

from ..names import ABLATIONS, HOTPATHS, METHODS, PRECISIONS, SCALES
from ..registry import DATASETS
from ..settings import PRESETS


def _names() -> dict[tuple[str, ...], dict[str, Any]]:
    """Schema path -> what to set there (``items`` for the lists, the value itself otherwise)."""
    datasets = list(DATASETS)
    return {
        ("datasets", "items"): {"enum": datasets},
        ("datasets",): {"default": datasets},
        ("dataset_seeds",): {"propertyNames": {"enum": datasets}},
        ("methods", "items"): {"enum": list(METHODS)},
        ("methods",): {"default": list(METHODS)},
        ("preset",): {"enum": list(PRESETS)},
        ("scale",): {"enum": list(SCALES)},
        ("ablations", "items"): {"enum": list(ABLATIONS)},
        ("ablations",): {"default": list(ABLATIONS)},
        ("hotpath",): {"enum": [*HOTPATHS, None]},
        ("precision",): {"enum": [*PRECISIONS, None]},
    }


def config_schema(path: str | os.PathLike) -> dict[str, Any]:
    """The schema at ``path`` with the registry's names filled in (see the module docstring)."""
    with open(path) as fh:
        schema = yaml.safe_load(fh)
    for keys, values in _names().items():
        node = schema["properties"]
        for k in keys[:-1]:
            node = node[k]
        node = node[keys[-1]] if keys[-1] in node else node.setdefault(keys[-1], {})
        for name, value in values.items():
            if name in node:
                raise ValueError(f"{path}: {'.'.join(keys)}.{name} is written out; it comes from the registry")
            node[name] = value
    return schema


def coerce_config(value: Any, schema: Mapping[str, Any]) -> Any:
    """Convert the strings ``snakemake --config`` leaves inside lists and mappings
    (``seeds=[0,1]`` gives ``["0", "1"]``, ``raw_dir=null`` gives ``"null"``) to the types
    ``schema`` (a JSON schema) asks for, so validation sees what the user meant."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, str):
        text = value.strip()
        if "null" in types and text.lower() in ("null", "none", "~", ""):
            return None
        if "array" in types and text.startswith("["):
            return coerce_config(yaml.safe_load(text), schema)
        if "integer" in types and _is_int(text):
            return int(text)
        if "number" in types:
            try:
                return float(text)
            except ValueError:
                return value
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        return value
    if isinstance(value, list) and "items" in schema:
        return [coerce_config(v, schema["items"]) for v in value]
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {k: coerce_config(v, props[k]) if k in props else v for k, v in value.items()}
    return value


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()
