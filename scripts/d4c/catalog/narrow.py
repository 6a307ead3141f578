"""The schema after an append replaces one dataset's items: the one a rebuild computes.

A rebuild's schema is the union of every item's key sets (d4c.catalog.writer). An append
changes one dataset's items only, so widening the old schema by its new items' keys is
exact unless a key its old items used is one its new items lack: a `retain: latest`
alternate that `link_versions` drops from a version no longer released last, or an asset
key of a version released again without it. Only those keys are looked up in the other
datasets' rows (their leaf columns alone), and a key none uses leaves the schema.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from d4c.catalog.assets import RETAIN
from d4c.catalog.writer import (
    _ALT,
    _ALT_RETAIN,
    _FIELD,
    Keys,
    keys_of_schema,
    schema_from_keys,
    widen,
)

# A key as the column path whose nulls say an item lacks it (a struct: its asset, its
# alternate; a string: its field, its software), tagged so the three key sets stay apart.
Key = tuple[str, tuple[str, ...]]
_ASSET, _PATH, _SOFTWARE = "asset", "path", "software"


def minus(a: Keys, b: Keys) -> Keys:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


def _keys(keys: Keys) -> dict[Key, tuple[tuple[str, ...], str]]:
    """Each key -> the column path an item that has it holds a value at, and the dotted
    leaf column that carries that path's nulls (a struct's `href`; a name with a dot in
    it only makes pyarrow read more leaves, never fewer)."""
    out: dict[Key, tuple[str, ...]] = {}
    for k in keys[0]:
        out[(_ASSET, (k,))] = ("assets", k)
    for kind, k, name in keys[1]:
        out[(_PATH, (kind, k, name))] = {
            _FIELD: ("assets", k, name), _ALT: ("assets", k, "alternate", name),
            _ALT_RETAIN: ("assets", k, "alternate", name, RETAIN)}[kind]
    for name in keys[2]:
        out[(_SOFTWARE, (name,))] = ("processing:software", name)
    return {key: (path, ".".join(path + (("href",) if key[0] == _ASSET or key[:2] == (_PATH, _ALT) else ())))
            for key, path in out.items()}


def _used(table: pa.Table, path: tuple[str, ...]) -> bool:
    """Whether a row of `table` holds a value at `path` (struct_field keeps parents' nulls)."""
    column = table[path[0]]
    value = pc.struct_field(column, list(path[1:])) if len(path) > 1 else column
    return bool(value.null_count < len(value))


def _others(pf: pq.ParquetFile, read: Mapping[int, pa.Table], cid: str,
            columns: list[str]) -> Iterator[pa.Table]:
    """The rows of every dataset but `cid`: those of the groups already read from memory,
    the others' `columns` alone."""
    for g in range(pf.num_row_groups):
        if g in read:
            yield read[g].filter(pc.not_equal(read[g]["collection"], cid))
        else:
            yield pf.read_row_groups([g], columns=columns)


def _still_used(pf: pq.ParquetFile, read: Mapping[int, pa.Table], cid: str,
                keys: dict[Key, tuple[tuple[str, ...], str]]) -> set[Key]:
    """Those of `keys` some other dataset's item has; stops reading once all are found."""
    found: set[Key] = set()
    columns = sorted({leaf for _, leaf in keys.values()})
    for table in _others(pf, read, cid, columns):
        found |= {k for k, (p, _) in keys.items() if k not in found and _used(table, p)}
        if len(found) == len(keys):
            break
    return found


def schema_after(pf: pq.ParquetFile | None, read: Mapping[int, pa.Table], cid: str,
                 old_schema: pa.Schema, before: Keys, after: Keys) -> pa.Schema:
    """The file's schema once `cid`'s items, whose keys were `before`, have keys `after`;
    `read` holds the row groups that hold `cid`'s rows, decoded whole."""
    schema = widen(old_schema, after)
    gone = _keys(minus(before, after))
    if pf is None or not gone:
        return schema
    unused = set(gone) - _still_used(pf, read, cid, gone)
    if not unused:
        return schema
    assets, paths, software = keys_of_schema(schema)
    assets -= {k[1][0] for k in unused if k[0] == _ASSET}
    paths = {p for p in paths if (_PATH, p) not in unused and p[1] in assets}
    software -= {k[1][0] for k in unused if k[0] == _SOFTWARE}
    return schema_from_keys((assets, paths, software))
