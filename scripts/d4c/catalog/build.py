"""Regenerate the whole catalog from release records (`d4c catalog build`)."""
from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from d4c.catalog.collections import Collection, collection_for
from d4c.catalog.items import Item, items_from_records
from d4c.catalog.records import Record, descriptive_metadata
from d4c.catalog.tree import write_dataset, write_root
from d4c.catalog.writer import concat_parts, items_to_table, write_parquet

Metadata = Callable[[Record], dict[str, Any]]
BATCH = 4096  # items converted to Arrow at a time


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    With 100,000 records alive, each automatic collection walks them all; the mapping
    creates no cycles, so those walks are pure overhead (about half the build time).
    On the way out the survivors are frozen (`gc.freeze`): otherwise the first
    collections after the pause would walk the millions of new objects once per
    generation. They are still freed by reference counting; only cycle detection
    skips them, and they hold no cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()


def metadata_from(root: Path | None) -> Metadata:
    """Descriptive metadata of a record: its own `metadata`, else the recipe under `root`."""
    return lambda record: descriptive_metadata(record, root)


def build_catalog(
    records: Iterable[Record],
    out: Path,
    *,
    metadata: Metadata | None = None,
    collections_dir: Path | None = None,
) -> tuple[int, dict[str, Collection]]:
    """Write `out` (and the static JSON tree when asked); same records, same bytes.

    Datasets are mapped one at a time and converted to Arrow a few thousand items at a
    time: items live only until they are Arrow rows, which keeps memory flat and the
    many small objects cache-warm. Returns (versions, collections).
    """
    meta = metadata or metadata_from(None)
    grouped: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        grouped[record["id"]].append(record)
    parts, collections = [], {}
    pending: list[Item] = []
    with paused_gc():
        for cid in sorted(grouped):
            items = items_from_records(grouped[cid], meta)
            collections[cid] = collection_for(items)
            if collections_dir is not None:
                write_dataset(items, collections[cid], collections_dir)
            pending += items
            if len(pending) >= BATCH:  # a few thousand rows per conversion: small overhead
                parts.append(items_to_table(pending))
                pending = []
        if pending or not parts:
            parts.append(items_to_table(pending))
        table = concat_parts(parts)
    write_parquet(table, collections, out)
    if collections_dir is not None:
        write_root(collections, collections_dir)
    return table.num_rows, collections
