"""Validate items and collections offline: STAC 1.1 core schemas bundled with pystac,
plus the stac-extensions schema (d4c.schemas) for the extension fields we use, and
our own d4c extension's schemas (stac-d4c for v1.1.0, stac-d4c-v1.0.0), the files the
static tree publishes. An item may declare either version of ours; it is checked against
the one it declares.

No schema is ever fetched: the registry's `retrieve` refuses every URI it was not
given, so a missing schema is an error here rather than a network call.
"""
from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft7Validator
from pystac.validation.local_validator import get_local_schema_cache
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT7

from d4c import schemas
from d4c.catalog.items import D4C_VERSIONS, EXT, extensions_used

_CORE = "https://schemas.stacspec.org/v1.1.0/{0}-spec/json-schema/{0}.json"


def _offline(uri: str) -> Resource:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # never the network


@functools.cache
def _registry() -> Registry:
    pairs = [(uri, Resource.from_contents(doc, default_specification=DRAFT7))
             for uri, doc in get_local_schema_cache().items()]
    return Registry(retrieve=_offline).with_resources(pairs)  # type: ignore[call-arg]


@functools.cache
def _core(kind: str) -> Draft7Validator:
    uri = _CORE.format(kind)
    return Draft7Validator({"$ref": uri}, registry=_registry())


@functools.cache
def _extensions() -> tuple[dict[str, str], dict[str, Any]]:
    doc = schemas.load("stac-extensions")
    known = {**doc["x-extensions"], **D4C_VERSIONS}  # d4c: its own published schemas
    return known, dict(doc["definitions"])


@functools.cache
def _ext_validator(name: str) -> Draft7Validator:
    if name in D4C_VERSIONS.values():
        return Draft7Validator(schemas.load(name))
    _, defs = _extensions()
    return Draft7Validator({"$ref": f"#/definitions/{name}", "definitions": defs})


def _messages(validator: Draft7Validator, obj: dict[str, Any], label: str) -> list[str]:
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{label}: /{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors]


def _check_extensions(obj: dict[str, Any], label: str, expected: list[str]) -> list[str]:
    known, _ = _extensions()
    declared = list(obj.get("stac_extensions") or [])
    problems = [f"{label}: no offline schema for extension {u}" for u in declared if u not in known]
    as_newest = sorted(EXT["d4c"] if u in D4C_VERSIONS else u for u in declared)
    if as_newest != sorted(expected):
        problems.append(f"{label}: stac_extensions {sorted(declared)} but fields use {sorted(expected)}")
    for uri in declared:
        if uri in known:
            problems += _messages(_ext_validator(known[uri]), obj, f"{label} [{known[uri]}]")
    return problems


def validate_item(item: dict[str, Any]) -> list[str]:
    """Problems with one item (empty when valid), each one line naming the item and path."""
    label = f"item {item.get('id')}"
    return _messages(_core("item"), item, label) + _check_extensions(item, label, extensions_used(item))


def validate_collection(coll: dict[str, Any]) -> list[str]:
    label = f"collection {coll.get('id')}"
    expected = [EXT["d4c"]] if any(k.startswith("d4c:") for k in coll) else []
    return _messages(_core("collection"), coll, label) + _check_extensions(coll, label, expected)
