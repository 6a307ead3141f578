"""Deterministic writers: the same table always gives the same bytes.

Rows are sorted by the output's declared keys; every encoding setting that could
default differently is fixed here; footer metadata holds only what we put there
(no pandas metadata, no ARROW:schema, no creator or wall-clock). The one string we
cannot avoid is Parquet's `created_by` (the pyarrow version): pinned by the lock.
"""
from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from d4c.atomic import publish, temp_path

GEOPARQUET_VERSION = "1.1.0"
# Fixed Parquet settings; changing any of them changes every artifact's bytes.
PARQUET_SETTINGS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 9,
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

def _is_stream(data: Any) -> bool:
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


def _q(name: str) -> str:
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
    order = ", ".join([*(f"{_q(k)} ASC NULLS LAST" for k in keys), f"{_q(ROW)} ASC"])
    con = duckdb.connect(config={"memory_limit": SORT_MEMORY_LIMIT, "temp_directory": str(spill),
                                 "threads": SORT_THREADS, "preserve_insertion_order": True})
    try:
        con.register("d4c_input", pa.RecordBatchReader.from_batches(keyed, numbered()))
        cols = ", ".join(_q(n) for n in schema.names)
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


def _atomic_write_parquet(table: pa.Table, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a table as it is (already in order) with the fixed settings."""
    table = _plain(table)
    _write_row_groups(path, table.schema, _row_groups([table]), metadata)


def write_sorted(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = (),
                 metadata: Any = None, prepare: Any = None, in_memory: bool = False) -> int:
    """Write a table or a stream of batches as sorted Parquet; return the number of rows.

    `prepare(part) -> part` is applied to each table or batch first (GeoParquet: the WKB and
    the bbox covering). A whole table is sorted in memory; a stream is gathered up to
    IN_MEMORY_BYTES and sorted in memory if it ends there, else every batch goes through
    DuckDB's external sort. Both give the same order, so the same rows give the same bytes.
    `in_memory` sorts a stream in memory whatever its size (the parts of a frame already there).
    """
    prep = prepare or (lambda part: part if isinstance(part, pa.Table | pa.RecordBatch) else to_table(part))
    if not _is_stream(data):
        table = _plain(prep(to_table(data) if not isinstance(data, pa.Table) else data))
        _write_row_groups(path, table.schema, _sorted_in_memory(table, sort_by), metadata)
        return table.num_rows
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
        _write_row_groups(path, schema, _sorted_in_memory(table, sort_by), metadata)
        return table.num_rows
    assert schema is not None
    rows = [0]

    def rest() -> Any:
        for part in parts:
            out = _plain(prep(part), schema)
            yield out

    def counted(groups: Any) -> Any:
        for g in groups:
            rows[0] += g.num_rows
            yield g

    with tempfile.TemporaryDirectory(prefix=".d4c-sort-", dir=path.parent) as spill:
        _write_row_groups(path, schema, counted(_sorted_external(first, rest(), schema, sort_by, Path(spill))),
                          metadata)
    return rows[0]


def write_parquet(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = ()) -> int:
    """Write a sorted Parquet file with the fixed settings from a table, a DataFrame or a
    stream of batches (`iter_batches`); return the number of rows."""
    return write_sorted(path, data, sort_by)


# -- GeoParquet ----------------------------------------------------------------------------

# shapely's type ids -> GeoParquet geometry type names (a LinearRing is a LineString in WKB)
_GEOM_NAMES = {0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
BBOX_TYPE = pa.struct([pa.field(n, pa.float64()) for n in BBOX_FIELDS])


class GeoStats:
    """Geometry types and total bounds, gathered batch by batch (vectorised with shapely)."""

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.bounds = [math.inf, math.inf, -math.inf, -math.inf]

    def add(self, geoms: Any) -> Any:
        """Add an array of shapely geometries; return their (n, 4) bounds (NaN where empty)."""
        import numpy as np
        import shapely

        geoms = np.asarray(geoms, dtype=object)
        present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        ids = shapely.get_type_id(geoms[present])
        zs = shapely.has_z(geoms[present])
        for tid, z in set(zip(ids.tolist(), zs.tolist())):
            self.types.add(_GEOM_NAMES[tid] + (" Z" if z else ""))
        bounds = shapely.bounds(geoms)
        if present.any():
            b = bounds[present]
            self.bounds = [min(self.bounds[0], float(b[:, 0].min())), min(self.bounds[1], float(b[:, 1].min())),
                           max(self.bounds[2], float(b[:, 2].max())), max(self.bounds[3], float(b[:, 3].max()))]
        return bounds

    def bbox(self) -> list[float] | None:
        return None if math.isinf(self.bounds[0]) else list(self.bounds)


def geo_metadata(geoms: Any, crs: Any, column: str, covering: str | None = None,
                 stats: GeoStats | None = None) -> dict[str, Any]:
    """GeoParquet 1.1 `geo` metadata built by us: no creator, no library version.

    `covering` names the bbox struct column (GeoParquet 1.1 `covering`); `stats` gives the
    types and bounds already gathered (else they are read from `geoms`, vectorised).
    """
    if stats is None:
        stats = GeoStats()
        stats.add(geoms)
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": sorted(stats.types)}
    bbox = stats.bbox()
    if bbox is not None:
        col["bbox"] = bbox
    if covering:
        col["covering"] = {"bbox": {n: [covering, n] for n in BBOX_FIELDS}}
    # PROJJSON comes from pyproj's bundled PROJ, pinned by the lock. `None` means an
    # explicitly unknown CRS; GeoParquet reads a missing key as OGC:CRS84.
    col["crs"] = crs.to_json_dict() if crs is not None else None
    return {"version": GEOPARQUET_VERSION, "primary_column": column, "columns": {column: col}}


def _bbox_array(bounds: Any) -> pa.Array:
    import numpy as np

    missing = np.isnan(bounds[:, 0])
    fields = [pa.array(np.where(missing, 0.0, bounds[:, i]), pa.float64()) for i in range(4)]
    return pa.StructArray.from_arrays(fields, fields=list(BBOX_TYPE),
                                      mask=pa.array(missing) if missing.any() else None)


_UNSET: Any = object()


def write_geoparquet(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = (), *,
                     crs: Any = _UNSET, geometry: str | None = None) -> int:
    """Write GeoParquet 1.1 (ISO WKB geometry, a `bbox` covering column, our own `geo` metadata).

    `data` is a GeoDataFrame, or a stream (`iter_batches`) of GeoDataFrames or of Arrow
    batches whose `geometry` column (or the one named) holds WKB, e.g. pyogrio's
    `open_arrow`; a stream of batches needs `crs` (None: unknown). Returns the row count.
    """
    import geopandas as gpd
    import pyproj
    import shapely

    stats = GeoStats()
    state: dict[str, Any] = {"column": geometry, "crs": None if crs is _UNSET else crs, "cover": None}

    def from_geoms(attrs: pa.Table, geoms: Any, column: str) -> pa.Table:
        # Little-endian ISO WKB with no SRID: the same geometry always gives the same bytes.
        wkb = shapely.to_wkb(geoms, hex=False, byte_order=1, include_srid=False, flavor="iso")
        bounds = stats.add(geoms)
        table = attrs.append_column(pa.field(column, pa.binary()), pa.array(wkb, type=pa.binary()))
        cover = state["cover"] or ("bbox" if "bbox" not in table.column_names else f"{column}_bbox")
        if cover in table.column_names:
            raise ValueError(f"column {cover!r} is taken: it is the name of the bbox covering column")
        state["cover"] = cover
        return table.append_column(pa.field(cover, BBOX_TYPE), _bbox_array(bounds))

    def prepare(part: Any) -> pa.Table:
        if isinstance(part, gpd.GeoDataFrame):
            column = part.geometry.name
            if state["column"] not in (None, column):
                raise ValueError(f"a frame's geometry is {column!r}, the stream's {state['column']!r}")
            state["column"] = column
            if crs is _UNSET:
                state["crs"] = part.crs
            attrs = to_table(part.drop(columns=[column]).reset_index(drop=True))
            return from_geoms(attrs, part.geometry.values, column)
        if not isinstance(part, pa.Table | pa.RecordBatch):
            raise TypeError(f"write_geoparquet expects GeoDataFrames or Arrow batches, got {type(part).__name__}")
        table = part if isinstance(part, pa.Table) else pa.Table.from_batches([part])
        column = state["column"] = state["column"] or "geometry"
        if column not in table.column_names:
            raise ValueError(f"no geometry column {column!r} among {table.column_names}")
        if crs is _UNSET:
            raise ValueError("a stream of Arrow batches needs crs= (None for an unknown CRS)")
        col = table.column(column)
        if isinstance(col.type, pa.ExtensionType):
            col = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
        geoms = shapely.from_wkb(col.to_numpy(zero_copy_only=False))
        return from_geoms(table.drop_columns([column]), geoms, column)

    if isinstance(data, gpd.GeoDataFrame):
        data = _frame_slices(data)  # converted slice by slice: the frame plus one Arrow copy
    elif not _is_stream(data) or isinstance(data, pa.Table):
        if isinstance(data, pa.Table):
            data = [data]
        else:
            raise TypeError(f"write_geoparquet expects a GeoDataFrame or a stream, got {type(data).__name__}")

    def metadata() -> dict[str, str]:
        c = state["crs"]
        c = pyproj.CRS.from_user_input(c) if c is not None and not isinstance(c, pyproj.CRS) else c
        meta = geo_metadata(None, c, state["column"] or "geometry", state["cover"], stats)
        return {"geo": json.dumps(meta, sort_keys=True, separators=(",", ":"))}

    return write_sorted(path, data, sort_by, metadata, prepare, in_memory=isinstance(data, _frame_slices))


class _frame_slices:
    """A GeoDataFrame as a stream of slices that is known to fit in memory (it already does)."""

    def __init__(self, gdf: Any) -> None:
        self.gdf = gdf

    def __iter__(self) -> Any:
        for start in range(0, max(len(self.gdf), 1), ROW_GROUP_ROWS):
            yield self.gdf.iloc[start:start + ROW_GROUP_ROWS]


def _cell(value: Any) -> str:
    """One CSV field: fixed text forms so that the bytes never depend on the locale."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def write_csv(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = ()) -> pa.Table:
    """Write sorted CSV: UTF-8, LF line ends, header, minimal quoting, fixed number forms."""
    table = sort_table(to_table(data), sort_by)
    tmp = temp_path(path)
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        out.writerow(table.column_names)
        for batch in table.to_batches(max_chunksize=65536):
            cols = [c.to_pylist() for c in batch.columns]
            out.writerows([_cell(v) for v in row] for row in zip(*cols))
    publish(tmp, path, durable=False)  # a build folder, published whole by the pipeline
    return table
