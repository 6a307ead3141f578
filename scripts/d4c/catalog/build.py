"""Regenerate the whole catalog from release records (`d4c catalog build`)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from d4c.catalog.collections import Collection, collections_for, write_static
from d4c.catalog.items import Item, items_from_records
from d4c.catalog.records import Record, descriptive_metadata
from d4c.catalog.writer import items_to_table, write_parquet

Metadata = Callable[[Record], dict[str, Any]]


def metadata_from(root: Path | None) -> Metadata:
    """Descriptive metadata of a record: its own `metadata`, else the recipe under `root`."""
    return lambda record: descriptive_metadata(record, root)


def build_catalog(
    records: Iterable[Record],
    out: Path,
    *,
    metadata: Metadata | None = None,
    collections_dir: Path | None = None,
) -> tuple[list[Item], dict[str, Collection]]:
    """Write `out` (and the static JSON tree when asked); same records, same bytes."""
    items = items_from_records(records, metadata or metadata_from(None))
    collections = collections_for(items)
    write_parquet(items_to_table(items), collections, out)
    if collections_dir is not None:
        write_static(items, collections, collections_dir)
    return items, collections
