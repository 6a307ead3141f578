"""The recipe schema: valid 2020-12, described everywhere, covering every recipe field,
agreeing with the demo recipes and with the generated contributor guide."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from d4c.recipe import EXTENSIONS
from d4c.validate import fieldref
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO / "scripts" / "d4c" / "schemas" / "recipe.schema.json"  # package data
SCHEMA = json.loads(SCHEMA_PATH.read_text())
# docs/architecture.md "Recipe" and DESIGN section 4.
FIELDS = ["id", "version", "title.en", "title.fr", "description.en", "description.fr", "license", "creators[].name", "creators[].affiliation", "creators[].orcid", "providers[].name", "providers[].roles", "providers[].url", "keywords", "temporal.start", "temporal.end", "spatial.bbox", "sources[].name", "sources[].url", "sources[].path", "sources[].sha256", "sources[].size", "sources[].alternate_urls", "sources[].extract", "transform.python", "transform.command", "transform.params", "environment", "outputs[].name", "outputs[].format", "outputs[].sort_by", "outputs[].primary_key", "distribution.targets", "distribution.torrent", "sample.params", "limits.wall_time", "limits.memory", "limits.processes", "limits.output_size"]


def properties(node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    found = {}
    for name, child in node.get("properties", {}).items():
        found[prefix + name] = child
        if child.get("type") == "array":
            found.update(properties(child.get("items", {}), f"{prefix}{name}[]."))
        else:
            found.update(properties(child, f"{prefix}{name}."))
    return found


def test_schema_is_valid_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_every_field_is_covered_and_described() -> None:
    props = properties(SCHEMA)
    assert set(FIELDS) <= set(props), sorted(set(FIELDS) - set(props))
    undocumented = [name for name, node in props.items() if len(node.get("description", "")) < 8]
    assert not undocumented


def test_closed_objects_and_formats() -> None:
    objects = [n for n in [SCHEMA, *properties(SCHEMA).values()] if n.get("type") == "object"]
    objects += [n["items"] for n in properties(SCHEMA).values() if n.get("items", {}).get("type") == "object"]
    open_ones = {id(n) for n in objects if n.get("additionalProperties") is not False}
    params = {id(n) for k, n in properties(SCHEMA).items() if k.endswith("params")}
    assert open_ones == params  # only free-form params may hold any key
    assert set(SCHEMA["properties"]["outputs"]["items"]["properties"]["format"]["enum"]) == set(EXTENSIONS)


def test_demo_recipes_pass_check_jsonschema() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    recipes = sorted(str(p) for p in (REPO / "datasets").glob("*/recipe.yaml"))
    proc = subprocess.run([str(tool), "--schemafile", str(SCHEMA_PATH), *recipes],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_contributor_guide_field_reference_is_fresh() -> None:
    page = (REPO / "docs" / "contributing.md").read_text()
    assert fieldref.splice(page, SCHEMA) == page, "run `make docs`"


def test_limits_forms() -> None:
    check = Draft202012Validator(SCHEMA["properties"]["limits"])
    good = [{}, {"wall_time": "90m", "memory": "8GiB", "processes": 8, "output_size": "512 MiB"},
            {"wall_time": "2h", "memory": "1 TiB", "processes": 65536}, {"wall_time": "45s"}]
    bad = [{"wall_time": "0m"}, {"wall_time": "1.5h"}, {"wall_time": "2H"}, {"wall_time": 90},
           {"memory": "8GB"}, {"memory": "8  GiB"}, {"memory": "08GiB"}, {"output_size": "-1GiB"},
           {"processes": 7}, {"processes": 65537}, {"processes": "512"}, {"processes": 8.5},
           {"cpu": 2}, "2h"]
    assert [v for v in good if not check.is_valid(v)] == []
    assert [v for v in bad if check.is_valid(v)] == []
