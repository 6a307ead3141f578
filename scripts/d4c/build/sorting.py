"""Sorted Parquet writing with bounded memory: the total row order every d4c table has.

A table or a stream of batches becomes plain Arrow (no extension or dictionary types), is
sorted by the declared keys, then every other sortable column, then the input position
(so the order is total and no budget or thread count can move a row), in memory when it
is small and by DuckDB's external sort when it is not, and written with fixed settings.
`d4c.build.writers` builds the format writers (Parquet, GeoParquet, CSV) on this.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from d4c.atomic import publish, temp_path

# Fixed Parquet settings; changing any of them changes every artifact's bytes.
PARQUET_SETTINGS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 65536,
    "data_page_size": 1024 * 1024,
    "data_page_version": "1.0",
    "use_dictionary": True,
    "write_statistics": True,
    "store_schema": False,
    "write_page_index": False,
}


# The external sort of a stream: DuckDB's ORDER BY within this memory budget, spilling to a
# private folder beside the output (on disk: the sandbox's /tmp is memory). The order is
# total (every sortable column, then the input position), so neither the budget nor the
# thread count can change the bytes.
SORT_MEMORY_LIMIT = "384MiB"
SORT_THREADS = 2
# A stream whose batches add up to less than this is sorted in memory (pyarrow's stable
# sort, the same order), a bigger one goes to the external sort.
IN_MEMORY_BYTES = 128 * 1024 * 1024
ROW_GROUP_ROWS: int = PARQUET_SETTINGS["row_group_size"]
ROW = "__d4c_row"  # the input position: the last sort key of the external sort


def _plain_type(t: pa.DataType) -> pa.DataType:
    """The type written: dictionaries decoded (their order is an accident of the input),
    extension types as their storage."""
    if isinstance(t, pa.ExtensionType):
        return _plain_type(t.storage_type)
    if pa.types.is_dictionary(t):
        return _plain_type(t.value_type)
    return t


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """No schema or field metadata, no dictionaries, no extension types."""
    return pa.schema([pa.field(f.name, _plain_type(f.type), f.nullable) for f in schema])


def _storage(col: Any) -> Any:
    if isinstance(col, pa.ChunkedArray) and isinstance(col.type, pa.ExtensionType):
        return pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
    return col.storage if isinstance(col, pa.ExtensionArray) else col


def _plain(data: pa.Table | pa.RecordBatch, schema: pa.Schema | None = None) -> Any:
    """`data` with `schema` (default: its own plain schema), cast where it differs."""
    target = schema if schema is not None else plain_schema(data.schema)
    if data.schema.names != target.names:
        raise ValueError(f"a batch has the columns {data.schema.names}, the stream's first {target.names}")
    if data.schema.equals(target):
        return data
    cols = [_storage(c) for c in data.columns]
    kind = pa.RecordBatch if isinstance(data, pa.RecordBatch) else pa.Table
    return kind.from_arrays(cols, names=target.names).cast(target)


def to_table(data: Any) -> pa.Table:
    """A pyarrow Table from a Table or a pandas DataFrame, without the index or pandas metadata."""
    if isinstance(data, pa.Table):
        table = data
    else:
        import pandas as pd

        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"expected a pyarrow Table or pandas DataFrame, got {type(data).__name__}")
        table = pa.Table.from_pandas(data, preserve_index=False)
    return table.replace_schema_metadata(None)


def sort_keys(schema: pa.Schema, sort_by: tuple[str, ...] | list[str]) -> list[str]:
    """The declared keys first, then every other sortable column as a tie-break."""
    missing = [k for k in sort_by if k not in schema.names]
    if missing:
        raise ValueError(f"sort key(s) {missing} not among the columns {schema.names}")
    return list(sort_by) + [f.name for f in schema if f.name not in sort_by and _sortable_type(f.type)]


def sort_table(table: pa.Table, sort_by: tuple[str, ...] | list[str]) -> pa.Table:
    """Rows in a defined order: the declared keys first, then every other column as a tie-break."""
    keys = sort_keys(table.schema, sort_by)
    if not keys or table.num_rows < 2:
        return table
    return table.sort_by([(k, "ascending") for k in keys])


def _sortable_type(t: pa.DataType) -> bool:
    return not (pa.types.is_nested(t) or pa.types.is_dictionary(t) or isinstance(t, pa.ExtensionType))


def _sortable(table: pa.Table, name: str) -> bool:
    return _sortable_type(table.schema.field(name).type)


# -- one writer for whole tables and streams ---------------------------------------------

def is_stream(data: Any) -> bool:
    if isinstance(data, pa.Table | pa.RecordBatch):
        return False
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return False
    except ImportError:  # pragma: no cover - pandas is in the lock
        pass
    return isinstance(data, pa.RecordBatchReader) or hasattr(data, "__iter__") or hasattr(data, "to_arrow_reader")


def iter_batches(data: Any) -> Any:
    """Arrow tables or batches from a stream: a RecordBatchReader, a DuckDB relation, or an
    iterable of RecordBatch, Table, pandas DataFrame (GeoDataFrames: see write_geoparquet)."""
    if hasattr(data, "to_arrow_reader") and not isinstance(data, pa.RecordBatchReader):
        data = data.to_arrow_reader(ROW_GROUP_ROWS)  # a DuckDB relation, read as it runs
    yield from data


def _row_groups(parts: Any) -> Any:
    """Re-cut a stream of tables into row groups of exactly ROW_GROUP_ROWS rows (the last
    shorter), each one contiguous: the same rows give the same pages however they arrived."""
    pending: list[pa.Table] = []
    have = 0
    for part in parts:
        if isinstance(part, pa.RecordBatch):
            part = pa.Table.from_batches([part])
        while part.num_rows:
            take = min(ROW_GROUP_ROWS - have, part.num_rows)
            pending.append(part.slice(0, take))
            part = part.slice(take)
            have += take
            if have == ROW_GROUP_ROWS:
                yield pa.concat_tables(pending).combine_chunks()
                pending, have = [], 0
    if have:
        yield pa.concat_tables(pending).combine_chunks()


def _sorted_in_memory(table: pa.Table, sort_by: tuple[str, ...] | list[str]) -> Any:
    """Row groups of `table` in sort order, taken one at a time (no sorted copy of it all)."""
    keys = sort_keys(table.schema, sort_by)
    if keys and table.num_rows > 1:
        order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys])
        for start in range(0, table.num_rows, ROW_GROUP_ROWS):
            yield table.take(order.slice(start, ROW_GROUP_ROWS)).combine_chunks()
    else:
        yield from _row_groups([table])


def sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sorted_external(first: list[pa.Table], rest: Any, schema: pa.Schema,
                     sort_by: tuple[str, ...] | list[str], spill: Path) -> Any:
    """Row groups in sort order from DuckDB's external sort of every batch (`first`, then `rest`)."""
    import duckdb

    if ROW in schema.names:
        raise ValueError(f"column name {ROW!r} is reserved")
    keyed = schema.append(pa.field(ROW, pa.int64(), False))

    def numbered() -> Any:
        n = 0

        def parts() -> Any:
            while first:  # the batches gathered before the budget ran out, let go as DuckDB takes them
                yield first.pop(0)
            yield from rest

        for part in parts():
            for batch in (part.to_batches() if isinstance(part, pa.Table) else [part]):
                if batch.num_rows:
                    yield pa.RecordBatch.from_arrays(
                        [*batch.columns, pa.array(range(n, n + batch.num_rows), pa.int64())], schema=keyed)
                    n += batch.num_rows

    keys = sort_keys(schema, sort_by)
    order = ", ".join([*(f"{sql_name(k)} ASC NULLS LAST" for k in keys), f"{sql_name(ROW)} ASC"])
    con = duckdb.connect(config={"memory_limit": SORT_MEMORY_LIMIT, "temp_directory": str(spill),
                                 "threads": SORT_THREADS, "preserve_insertion_order": True})
    try:
        con.register("d4c_input", pa.RecordBatchReader.from_batches(keyed, numbered()))
        cols = ", ".join(sql_name(n) for n in schema.names)
        reader = con.sql(f"SELECT {cols} FROM d4c_input ORDER BY {order}").to_arrow_reader(ROW_GROUP_ROWS)
        yield from _row_groups(b.cast(schema) if not b.schema.equals(schema) else b for b in reader)
    finally:
        con.close()


def _write_row_groups(path: Path, schema: pa.Schema, groups: Any,
                      metadata: Any = None) -> None:
    """Write row groups with the fixed settings; `metadata` (a dict, or a function called
    once every row is written, for facts gathered on the way) is the footer key-value metadata.

    store_schema=False drops ARROW:schema and with it all schema metadata, so our own
    keys are added to the footer explicitly (in sorted order).
    """
    tmp = temp_path(path)
    settings = {k: v for k, v in PARQUET_SETTINGS.items() if k != "row_group_size"}
    try:
        with pq.ParquetWriter(tmp, schema, **settings) as writer:
            for group in groups:
                writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
            meta = metadata() if callable(metadata) else metadata
            if meta:
                writer.add_key_value_metadata(dict(sorted(meta.items())))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, path, durable=False)  # a build folder, published whole by the pipeline


def atomic_write_parquet(table: pa.Table, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a table as it is (already in order) with the fixed settings."""
    table = _plain(table)
    _write_row_groups(path, table.schema, _row_groups([table]), metadata)


def write_sorted(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = (),
                 metadata: Any = None, prepare: Any = None, in_memory: bool = False) -> int:
    """Write a table or a stream of batches as sorted Parquet; return the number of rows.

    `prepare(part) -> part` is applied to each table or batch first (GeoParquet: the WKB and
    the bbox covering). The order and the memory bound are `sorted_groups`'s, so the same
    rows give the same bytes however they arrive.
    """
    rows = [0]

    def counted(groups: Any) -> Any:
        for g in groups:
            rows[0] += g.num_rows
            yield g

    with sorted_groups(path, data, sort_by, prepare, in_memory) as (schema, groups):
        _write_row_groups(path, schema, counted(groups), metadata)
    return rows[0]


@contextmanager
def sorted_groups(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = (), prepare: Any = None,
                  in_memory: bool = False) -> Iterator[tuple[pa.Schema, Iterator[pa.Table]]]:
    """The plain schema and the row groups (ROW_GROUP_ROWS rows) of `data` in sort order, for
    any writer (Parquet, CSV). A whole table is sorted in memory; a stream is gathered up to
    IN_MEMORY_BYTES and sorted in memory if it ends there, else every batch goes through
    DuckDB's external sort, spilling beside `path`. Both give the same order. `in_memory`
    sorts a stream in memory whatever its size (the parts of a frame already there)."""
    prep = prepare or (lambda part: part if isinstance(part, pa.Table | pa.RecordBatch) else to_table(part))
    if not is_stream(data):
        table = _plain(prep(to_table(data) if not isinstance(data, pa.Table) else data))
        yield table.schema, _sorted_in_memory(table, sort_by)
        return
    parts = iter(iter_batches(data))
    first: list[Any] = []
    schema: pa.Schema | None = None
    size = 0
    for part in parts:
        part = prep(part)
        schema = schema or plain_schema(part.schema)
        first.append(_plain(part, schema))
        size += first[-1].nbytes
        if size > IN_MEMORY_BYTES and not in_memory:
            break
    else:  # the whole stream fits: one table, sorted in memory
        if schema is None:
            raise ValueError("the stream holds no batches (not even an empty one with the columns)")
        table = pa.Table.from_batches([b for p in first for b in (p.to_batches() if isinstance(p, pa.Table) else [p])],
                                      schema=schema)
        del first
        yield schema, _sorted_in_memory(table, sort_by)
        return
    assert schema is not None
    plain = schema

    def rest() -> Any:
        for part in parts:
            yield _plain(prep(part), plain)

    with tempfile.TemporaryDirectory(prefix=".d4c-sort-", dir=path.parent) as spill:
        yield schema, _sorted_external(first, rest(), schema, sort_by, Path(spill))
