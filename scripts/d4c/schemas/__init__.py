"""The JSON Schemas of d4c's documents: the one place that reads them.

The files live beside this module as `<name>.schema.json` and ship in the wheel as package
data; they are read through importlib.resources, so a checkout, an editable install and an
installed wheel all check documents against the schemas of the code that runs.
`schemas/` at the repository root is a symlink to this folder, for readers and links.

    recipe           a dataset's recipe.yaml (d4c validate)
    manifest         a build's manifest.json
    shard-manifest   a shard's shard.json, read by the reduce (docs/scale.md)
    release          a release record, releases/<id>/<version>.json
    targets          the targets config of d4c release
    stac-extensions  the offline checks of the STAC extension fields the catalog uses
    stac-d4c         the d4c STAC extension v1.1.0 (published with the catalog's static tree)
    stac-d4c-v1.0.0  its v1.0.0, unchanged since it was published (never edit a published one)

`load` and `validator` are cached per process; treat what they return as read-only.
"""
from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import Draft202012Validator, validator_for

from d4c.errors import D4CError

NAMES = ("recipe", "manifest", "shard-manifest", "release", "targets", "stac-extensions", "stac-d4c",
         "stac-d4c-v1.0.0")


def filename(name: str) -> str:
    """`manifest` -> `manifest.schema.json`."""
    if name not in NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(NAMES)}")
    return f"{name}.schema.json"


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed schema `name` (one of NAMES)."""
    file = filename(name)
    try:
        doc = json.loads(resources.files(__name__).joinpath(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise D4CError(f"cannot read the {name} schema {file} from the d4c package: {exc}",
                       hint="reinstall d4c; its wheel ships d4c/schemas/*.json") from None
    if not isinstance(doc, dict):
        raise D4CError(f"the {name} schema {file} is not a JSON object")
    return doc


@cache
def validator(name: str) -> Validator:
    """A validator for schema `name`, of the draft its `$schema` names; no format checker."""
    schema = load(name)
    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema)  # type: ignore[no-any-return]


def errors(name: str, doc: Any) -> list[ValidationError]:
    """Every way `doc` breaks schema `name`, ordered by where in the document."""
    return sorted(validator(name).iter_errors(doc),
                  key=lambda e: [str(p) for p in e.absolute_path])


def location(err: ValidationError) -> str:
    """The JSON path of an error as `outputs/0/sha256`, or `(top)` for the document itself."""
    return "/".join(str(p) for p in err.absolute_path) or "(top)"


def check(name: str, doc: Any, *, what: str, where: str | None = None,
          hint: str | None = None) -> None:
    """Raise one D4CError naming the first problem and its JSON path, if `doc` breaks `name`."""
    found = errors(name, doc)
    if found:
        err = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise D4CError(f"{what} does not match schemas/{filename(name)} at {location(err)}: "
                       f"{err.message}{more}", where=where, hint=hint)
