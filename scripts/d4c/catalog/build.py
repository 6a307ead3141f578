"""Regenerate the whole catalog from release records (`d4c catalog build`), streaming."""
from __future__ import annotations

import gc
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from d4c.catalog.collections import Collection, collection_for
from d4c.catalog.items import Item, items_from_records
from d4c.catalog.records import Record, descriptive_metadata
from d4c.catalog.spill import Spill
from d4c.catalog.tree import write_dataset, write_root
from d4c.catalog.writer import (
    Keys,
    catalog_writer,
    conform,
    items_to_table,
    schema_from_keys,
    union_keys,
)
from d4c.errors import D4CError

Metadata = Callable[[Record], dict[str, Any]]
# Items converted to Arrow (and spilled) at a time, whole datasets: one conversion costs
# about as much per column as per row at 100 rows, so a few thousand keep it small.
BATCH = 4096
Part = tuple[Spill, dict[str, Collection]]  # a run of datasets' tables and collections


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
    """Write `out` from records in any order (held in memory: tests, small catalogs; the
    CLI streams `build_from_datasets`). Same records, same bytes."""
    grouped: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        grouped[record["id"]].append(record)
    return build_from_datasets((grouped[cid] for cid in sorted(grouped)), out,
                               metadata=metadata, collections_dir=collections_dir)


def build_from_datasets(
    datasets: Iterable[list[Record]],
    out: Path,
    *,
    metadata: Metadata | None = None,
    collections_dir: Path | None = None,
) -> tuple[int, dict[str, Collection]]:
    """Write `out` (and the static JSON tree when asked) from each dataset's records, the
    datasets in id order (`records.iter_datasets`), in this process; returns (versions,
    collections). The CLI reads `releases/` across the cores (`build_from_releases`)."""
    with tempfile.TemporaryDirectory(prefix="d4c-catalog-") as tmp:
        part = map_datasets(datasets, Spill(Path(tmp)), metadata or metadata_from(None),
                            collections_dir)
        return write_parts([part], out, collections_dir)


def map_datasets(datasets: Iterable[list[Record]], spill: Spill, meta: Metadata,
                 collections_dir: Path | None) -> Part:
    """Records -> items, a dataset at a time -> Arrow tables of BATCH items (whole datasets)
    parked in `spill` (d4c.catalog.spill), since the schema (the union of every dataset's
    key sets) is known only at the end. Memory: BATCH items or the largest dataset."""
    collections: dict[str, Collection] = {}
    pending: list[Item] = []
    with paused_gc():
        for records in datasets:
            items = items_from_records(records, meta)
            cid = items[0]["collection"]
            if collections and cid <= next(reversed(collections)):
                raise D4CError(f"dataset {cid} comes out of order",
                               hint="pass each dataset once, in id order")
            collections[cid] = collection_for(items)
            if collections_dir is not None:
                write_dataset(items, collections[cid], collections_dir)
            pending += items
            if len(pending) >= BATCH:
                spill.add(items_to_table(pending))
                pending = []
        if pending:
            spill.add(items_to_table(pending))
    spill.close()
    return spill, collections


def write_parts(parts: list[Part], out: Path,
                collections_dir: Path | None) -> tuple[int, dict[str, Collection]]:
    """The spilled parts (in dataset order) -> one catalog, a dataset at a time into one
    ParquetWriter: the rows do not depend on how the datasets were split into parts."""
    collections: dict[str, Collection] = {}
    keys: Keys = (set(), set(), set())
    for spill, colls in parts:
        if collections and colls and next(iter(colls)) <= next(reversed(collections)):
            raise D4CError(f"dataset {next(iter(colls))} comes out of order",
                           hint="pass each dataset once, in id order")
        collections.update(colls)
        keys = union_keys(keys, spill.keys)
    schema = schema_from_keys(keys)
    with catalog_writer(out, schema) as writer:
        for spill, _ in parts:
            for table in spill.tables():
                writer.add_datasets(conform(table, schema))
        writer.collections = collections
    if collections_dir is not None:
        write_root(collections, collections_dir)
    return sum(spill.rows for spill, _ in parts), collections
