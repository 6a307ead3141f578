"""ReleaseRecord.check (the catalog's bulk shape check, which builds no objects) must fail
exactly where and how ReleaseRecord.from_doc(checked=False) fails: the same first error
line for every broken shape, and no error where from_doc gives none."""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from catalog_factory import make_record
from d4c.errors import D4CError
from d4c.model import ReleaseRecord

# wrong-typed stand-ins for any value: each breaks a different access (subscript, iteration,
# int(), dict(), tuple(), .get)
BAD: list[Any] = [None, 7, "x", [], {}, [1], {"a": 1}, 1.5, True]


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index path inside a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*at, k)
            yield from _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:2]):
            yield (*at, i)
            yield from _paths(v, (*at, i))


def _record() -> dict[str, Any]:
    record = make_record("ca_x", "1.0.0", outputs=(("a", "geoparquet"), ("b", "csv")))
    record["sources"] = [{"name": "s", "sha256": "0" * 64, "size": 1, "urls": {"m": "u"}}]
    record["manifest"]["sources"] = [{"name": "s", "sha256": "0" * 64, "size": 1, "url": "u",
                                      "path": None}]
    record["targets"] = {"zenodo": {"record_id": 1}}
    return record


def _variants() -> Iterator[dict[str, Any]]:
    base = _record()
    yield base
    for path in _paths(base):
        for change in ("drop", *range(len(BAD))):
            doc = copy.deepcopy(base)
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            if change == "drop":
                if isinstance(parent, dict):
                    del parent[path[-1]]
                else:
                    parent.pop(path[-1])
            else:
                parent[path[-1]] = copy.deepcopy(BAD[change])
            yield doc


def _line(fn: Any, doc: dict[str, Any]) -> str | None:
    try:
        fn(doc)
    except D4CError as exc:
        return exc.line()
    return None


def test_check_fails_as_from_doc_fails() -> None:
    lines = set()
    count = 0
    for doc in _variants():
        want = _line(lambda d: ReleaseRecord.from_doc(d, where="r.json", checked=False), doc)
        got = _line(lambda d: ReleaseRecord.check(d, where="r.json"), doc)
        assert got == want, doc
        lines.add(want)
        count += 1
    assert count > 1000 and len(lines) > 20  # the variants reach many different failures


@pytest.mark.parametrize("wrong", ["ca_y", "2.0.0"])
def test_manifest_of_another_release(wrong: str) -> None:
    doc = _record()
    key = "id" if wrong == "ca_y" else "version"
    doc["manifest"]["dataset"][key] = wrong
    want = _line(lambda d: ReleaseRecord.from_doc(d, where="r.json", checked=False), doc)
    assert want is not None and "but its manifest for" in want
    assert _line(lambda d: ReleaseRecord.check(d, where="r.json"), doc) == want
