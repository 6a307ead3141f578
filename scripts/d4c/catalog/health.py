"""Mirror health in the catalog: `d4c:copies_ok`, `d4c:last_verified`, `d4c:at_risk` per
version, from the latest health file (d4c.mirrors.health.risks; docs/mirrors.md).

The fields are not derived from release records: a rebuild or an append of a dataset
leaves its versions without them until the health is applied again (`d4c mirrors
annotate`, which the scheduled check runs after each check).
"""
from __future__ import annotations

import fcntl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from d4c.catalog.items import Item, extensions_used, stac_time

FIELDS = ("d4c:copies_ok", "d4c:last_verified", "d4c:at_risk")


class RiskLike(Protocol):
    copies_ok: int
    at_risk: bool
    last_verified: str | None


def apply(items: list[Item], risks: Mapping[str, RiskLike]) -> int:
    """Set (or clear) the fields on each item; returns how many items have them."""
    n = 0
    for item in items:
        props = item["properties"]
        for key in FIELDS:
            props.pop(key, None)
        risk = risks.get(item["id"])
        if risk is not None:
            props["d4c:copies_ok"] = int(risk.copies_ok)
            props["d4c:at_risk"] = bool(risk.at_risk)
            if risk.last_verified:
                props["d4c:last_verified"] = stac_time(risk.last_verified)
            n += 1
        item["stac_extensions"] = extensions_used(item)
    return n


def annotate_file(path: Path, risks: Mapping[str, Any]) -> int:
    """Rewrite a local catalog file with the health fields, under the append lock."""
    from d4c.catalog.append import read_catalog
    from d4c.catalog.writer import items_to_table, table_to_items, write_parquet
    from d4c.errors import D4CError

    if not path.is_file():
        raise D4CError(f"no catalog at {path}", hint="run `d4c catalog build` first")
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table, colls = read_catalog(path)
        items = table_to_items(table)
        n = apply(items, risks)
        write_parquet(items_to_table(items), colls, path)
    return n
