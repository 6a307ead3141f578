"""d4c.schemas: every JSON Schema is package data read by one module, and fails clearly."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from d4c import schemas
from d4c.catalog.items import D4C_VERSIONS, EXT
from d4c.errors import D4CError
from jsonschema import Draft7Validator, Draft202012Validator

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "scripts" / "d4c" / "schemas"


def test_every_schema_file_is_known_and_loads_with_its_draft() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.json")) == sorted(map(schemas.filename, schemas.NAMES))
    for name in schemas.NAMES:
        doc = schemas.load(name)
        # The d4c STAC extension's id is the URL items declare (docs/catalog.md).
        assert doc["$id"] in D4C_VERSIONS if name.startswith("stac-d4c") else doc["$id"].endswith(f"/{name}.schema.json")
        assert name != "stac-d4c" or doc["$id"] == EXT["d4c"]
        kind = Draft7Validator if name.startswith("stac-") else Draft202012Validator
        assert isinstance(schemas.validator(name), kind)
        kind.check_schema(doc)
    assert schemas.load("manifest") is schemas.load("manifest")  # read once per process


def test_repo_root_schemas_is_a_link_to_the_package_data() -> None:
    link = REPO / "schemas"
    assert link.is_symlink() and link.resolve() == PACKAGE.resolve()


def test_check_names_the_schema_and_the_json_path() -> None:
    with pytest.raises(D4CError) as err:
        schemas.check("targets", {"targets": [{"name": "x", "kind": "local", "url": 3}]},
                      what="targets config", where="t.yaml", hint="see docs/operators.md")
    assert err.value.line().startswith(
        "t.yaml: targets config does not match schemas/targets.schema.json at targets/0")
    assert "(hint: see docs/operators.md)" in err.value.line()
    schemas.check("targets", {"targets": [{"name": "x", "kind": "local"}]}, what="targets config")
    with pytest.raises(ValueError, match="unknown schema"):
        schemas.load("nope")


def test_no_other_module_locates_a_schema_file() -> None:
    join = re.compile(r"""["']schemas["']\s*/|/\s*["']schemas["']|\.schema\.json["']\s*\)""")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "scripts" / "d4c").rglob("*.py")
                 if p.parent != PACKAGE and join.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_a_published_d4c_extension_version_never_changes() -> None:
    """v1.0.0 as it was published (commit 9e96dc3): new fields go into a new version."""
    import hashlib

    raw = (PACKAGE / "stac-d4c-v1.0.0.schema.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "d6725f9fa05ec2f90eb3d394353e4c26025de1559eceebd5b0f36328a4b5adcd"
    old = schemas.load("stac-d4c-v1.0.0")
    assert old["$id"].endswith("/d4c/v1.0.0/schema.json") and "d4c:at_risk" not in str(old)
    assert sorted(D4C_VERSIONS) == sorted({old["$id"], EXT["d4c"]})
