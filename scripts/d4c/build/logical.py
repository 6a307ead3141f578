"""What an artifact holds, independent of how it is encoded.

`describe` reads a written artifact back (the way users will; Parquet row group by row
group, so a file bigger than memory is described in bounded memory) and returns the
manifest facts (FlatGeobuf, COG and PMTiles: `d4c.build.geo_facts`): rows, columns
with null counts, a schema fingerprint, a logical content hash (the schema plus
every row, in sorted order, in a canonical text form: the same data re-encoded
with other Parquet settings hashes the same), and for GeoParquet the geometry
types, bbox and CRS from the `geo` metadata.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from d4c.build.sorting import sort_keys, sort_table

PARQUET_FORMATS = {"parquet", "geoparquet"}


def read_table(path: Path, fmt: str) -> pa.Table:
    """Read a tabular artifact the way its users will."""
    if fmt in PARQUET_FORMATS:
        return pq.read_table(path)
    if fmt == "csv":
        # Quoted values may hold line breaks (ctx.write_csv quotes them): read them as values.
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    raise ValueError(f"no reader for format {fmt!r}")


def schema_fields(schema: pa.Schema) -> list[list[Any]]:
    return [[f.name, str(f.type), f.nullable] for f in schema]


def schema_fingerprint(schema: pa.Schema) -> str:
    text = json.dumps(schema_fields(schema), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canon(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _column_streams(col: pa.ChunkedArray, streams: list[Any]) -> None:
    """Feed one column, chunk by chunk, into (validity, lengths, data) hashers.

    Each stream is a plain concatenation, so the digest does not depend on how the
    column is chunked; nulls are replaced by a fixed value and counted in validity.
    """
    valid, lengths, data = streams
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_decode()
        valid.update(np.ascontiguousarray(chunk.is_valid().to_numpy(zero_copy_only=False)).tobytes())
        t = chunk.type
        if pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) \
                or pa.types.is_large_string(t):
            filled = chunk.cast(pa.large_binary()).fill_null(b"")
            filled = pa.concat_arrays([filled])  # fresh buffers: offsets start at this slice
            offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[filled.offset:filled.offset + len(filled) + 1]
            lengths.update(np.diff(offsets).astype("<i8").tobytes())
            if len(filled):
                data.update(memoryview(filled.buffers()[2])[offsets[0]:offsets[-1]])
        elif pa.types.is_primitive(t) and not pa.types.is_boolean(t):
            zero = pa.scalar(0, type=t) if not pa.types.is_temporal(t) else None
            filled = chunk.fill_null(zero) if zero is not None and chunk.null_count else chunk
            values = filled.to_numpy(zero_copy_only=False)
            if values.dtype.kind in "mM":
                values = values.view("<i8")
            data.update(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())
        else:  # booleans, decimals, nested: canonical text per value
            for value in chunk.to_pylist():
                data.update(json.dumps(value, separators=(",", ":"), default=_canon).encode() + b"\n")


class LogicalHash:
    """The logical hash fed batch by batch, rows already in the logical order (see below)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.streams = [self._new(f.type) for f in schema]

    @staticmethod
    def _new(t: pa.DataType) -> list[Any]:
        # a struct (the bbox covering): its own validity, then each field as a column of its own
        if pa.types.is_struct(t):
            return [hashlib.sha256(), *[LogicalHash._new(t.field(i).type) for i in range(t.num_fields)]]
        return [hashlib.sha256() for _ in range(3)]

    @staticmethod
    def _feed(col: pa.ChunkedArray, streams: list[Any]) -> None:
        if pa.types.is_struct(col.type):
            for chunk in col.chunks:
                streams[0].update(np.ascontiguousarray(chunk.is_valid().to_numpy(zero_copy_only=False)).tobytes())
                for i, child in enumerate(chunk.flatten()):  # offsets applied, the struct's nulls merged in
                    LogicalHash._feed(pa.chunked_array([child], child.type), streams[i + 1])
        else:
            _column_streams(col, streams)

    @staticmethod
    def _digest(streams: list[Any]) -> bytes:
        return b"".join(s.digest() if hasattr(s, "digest") else LogicalHash._digest(s) for s in streams)

    def update(self, part: pa.Table | pa.RecordBatch) -> None:
        for i, col in enumerate(part.columns):
            self._feed(col if isinstance(col, pa.ChunkedArray) else pa.chunked_array([col], col.type),
                       self.streams[i])

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(schema_fields(self.schema), separators=(",", ":")).encode() + b"\n")
        for f, streams in zip(self.schema, self.streams, strict=True):
            h.update(f.name.encode() + b"\0" + self._digest(streams))
        return h.hexdigest()


def logical_sha256(table: pa.Table) -> str:
    """sha256 of the schema and of every column of the rows sorted by every column.

    Columnar (vectorised) rather than row by row: per column, the validity bytes,
    the value lengths (strings, binary) and the values in a fixed little-endian or
    text form. Any change of a value, of the row set or of the schema changes it;
    Parquet encoding, compression, row groups and row order do not.
    """
    h = LogicalHash(table.schema)
    h.update(sort_table(table, ()))
    return h.hexdigest()


# DuckDB's budget when a file's rows must be put in the logical order first (spills beyond it).
SORT_MEMORY_LIMIT = "512MiB"
BATCH_ROWS = 65536


def _in_order(batch: pa.RecordBatch, keys: list[str], last: pa.RecordBatch | None) -> bool:
    """Is `batch` (after the row `last`) already in the order sort_table(..., ()) gives?
    A stable sort of rows in order keeps them where they are, so this is exact."""
    if not keys:
        return True
    order = [(k, "ascending") for k in keys]
    if batch.num_rows > 1:
        idx = pc.sort_indices(batch, sort_keys=order).to_numpy()
        if not np.array_equal(idx, np.arange(batch.num_rows)):
            return False
    if last is not None and batch.num_rows:
        pair = pa.Table.from_batches([last, batch.slice(0, 1)])
        if pc.sort_indices(pair, sort_keys=order).to_pylist() != [0, 1]:
            return False
    return True


def _external_order(path: Path, schema: pa.Schema, keys: list[str]) -> Any:
    """The file's rows in the logical order, from DuckDB's external sort (ties in file order)."""
    import tempfile

    import duckdb

    from d4c.build.sorting import sql_name as _q

    order = ", ".join([*(f"{_q(k)} ASC NULLS LAST" for k in keys), "file_row_number ASC"])
    cols = ", ".join(_q(n) for n in schema.names)
    with tempfile.TemporaryDirectory(prefix="d4c-describe-") as spill:
        con = duckdb.connect(config={"memory_limit": SORT_MEMORY_LIMIT, "temp_directory": spill, "threads": 2})
        try:
            src = str(path).replace("'", "''")
            reader = con.sql(f"SELECT {cols} FROM read_parquet('{src}', file_row_number=true) "
                             f"ORDER BY {order}").to_arrow_reader(BATCH_ROWS)
            for batch in reader:
                yield batch.cast(schema) if not batch.schema.equals(schema) else batch
        finally:
            con.close()


def parquet_facts(path: Path) -> dict[str, Any]:
    """`table_facts` of a Parquet file read row group by row group (memory: a few batches).

    One pass counts rows and nulls and hashes the rows while they are in the logical order,
    which d4c's own files usually are; a file that is not is sorted by DuckDB (external).
    """
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow.remove_metadata()
    keys = sort_keys(schema, ())
    h = LogicalHash(schema)
    nulls = [0] * len(schema)
    rows = 0
    ordered, last = True, None
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
        batch = batch.cast(schema) if not batch.schema.equals(schema) else batch
        rows += batch.num_rows
        for i, col in enumerate(batch.columns):
            nulls[i] += col.null_count
        if ordered and _in_order(batch, keys, last):
            h.update(batch)
            last = batch.slice(batch.num_rows - 1) if batch.num_rows else last
        else:
            ordered = False
    if not ordered:
        h = LogicalHash(schema)
        try:
            for batch in _external_order(path, schema, keys):
                h.update(batch)
        except Exception:  # noqa: BLE001 - a type DuckDB cannot sort: the in-memory way
            h = LogicalHash(schema)
            h.update(sort_table(pq.read_table(path).replace_schema_metadata(None), ()))
    return {
        "rows": rows,
        "columns": [{"name": f.name, "type": str(f.type), "nulls": int(n)} for f, n in zip(schema, nulls, strict=True)],
        "schema_fingerprint": schema_fingerprint(schema),
        "logical_sha256": h.hexdigest(),
    }


def _crs_name(crs: Any) -> str | None:
    """'EPSG:4326' from PROJJSON's id; GeoParquet's default (key absent) is OGC:CRS84."""
    if crs is None:
        return None
    ident = crs.get("id") if isinstance(crs, dict) else None
    if ident and "authority" in ident and "code" in ident:
        return f"{ident['authority']}:{ident['code']}"
    name = crs.get("name") if isinstance(crs, dict) else None
    return str(name) if name else None


def geo_facts(schema: pa.Schema) -> dict[str, Any]:
    """Geometry types, bbox and CRS of the primary geometry column, from `geo` metadata."""
    raw = (schema.metadata or {}).get(b"geo")
    if not raw:
        return {"geometry_types": [], "crs": None, "bbox": None}
    geo = json.loads(raw)
    col = geo["columns"][geo["primary_column"]]
    crs = _crs_name(col["crs"]) if "crs" in col else "OGC:CRS84"
    return {"geometry_types": list(col.get("geometry_types", [])), "crs": crs, "bbox": col.get("bbox")}


def describe(path: Path, fmt: str) -> dict[str, Any]:
    """Manifest facts for one artifact: tabular here, FlatGeobuf, COG and PMTiles in geo_facts."""
    from d4c.build.geo_facts import DESCRIBE

    if fmt in DESCRIBE:
        try:
            return DESCRIBE[fmt](path)
        except (RuntimeError, KeyError, TypeError, AttributeError, struct.error) as exc:  # GDAL's errors, a malformed PMTiles
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
    if fmt not in PARQUET_FORMATS and fmt != "csv":
        return {}
    facts = parquet_facts(path) if fmt in PARQUET_FORMATS else table_facts(read_table(path, fmt))
    if fmt == "geoparquet":
        facts.update(geo_facts(pq.read_schema(path)))
    else:
        facts.update({"geometry_types": [], "crs": None, "bbox": None})
    return facts


def table_facts(table: pa.Table) -> dict[str, Any]:
    """Rows, columns with their null counts, the schema fingerprint and the logical hash."""
    return {
        "rows": table.num_rows,
        "columns": [
            {"name": f.name, "type": str(f.type), "nulls": int(table.column(i).null_count)}
            for i, f in enumerate(table.schema)
        ],
        "schema_fingerprint": schema_fingerprint(table.schema),
        "logical_sha256": logical_sha256(table),
    }
