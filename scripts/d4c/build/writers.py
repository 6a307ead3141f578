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
from pathlib import Path
from typing import Any

import pyarrow as pa
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


def sort_table(table: pa.Table, sort_by: tuple[str, ...] | list[str]) -> pa.Table:
    """Rows in a defined order: the declared keys first, then every other column as a tie-break."""
    missing = [k for k in sort_by if k not in table.column_names]
    if missing:
        raise ValueError(f"sort key(s) {missing} not among the columns {table.column_names}")
    keys = list(sort_by) + [c for c in table.column_names if c not in sort_by and _sortable(table, c)]
    if not keys or table.num_rows < 2:
        return table
    return table.sort_by([(k, "ascending") for k in keys])


def _sortable(table: pa.Table, name: str) -> bool:
    t = table.schema.field(name).type
    return not (pa.types.is_nested(t) or pa.types.is_dictionary(t))


def _atomic_write_parquet(table: pa.Table, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write with the fixed settings; `metadata` becomes the footer key-value metadata.

    store_schema=False drops ARROW:schema and with it all schema metadata, so our own
    keys are added to the footer explicitly (in sorted order).
    """
    tmp = temp_path(path)
    settings = {k: v for k, v in PARQUET_SETTINGS.items() if k != "row_group_size"}
    with pq.ParquetWriter(tmp, table.schema.remove_metadata(), **settings) as writer:
        writer.write_table(table, row_group_size=PARQUET_SETTINGS["row_group_size"])
        if metadata:
            writer.add_key_value_metadata(dict(sorted(metadata.items())))
    publish(tmp, path, durable=False)  # a build folder, published whole by the pipeline


def write_parquet(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = ()) -> pa.Table:
    """Write a sorted Parquet file with the fixed settings; return the table written."""
    table = sort_table(to_table(data), sort_by)
    _atomic_write_parquet(table, path)
    return table


def geo_metadata(geoms: Any, crs: Any, column: str) -> dict[str, Any]:
    """GeoParquet 1.1 `geo` metadata built by us: no creator, no library version."""
    import shapely

    present = [g for g in geoms if g is not None and not g.is_empty]
    types = sorted({g.geom_type + (" Z" if shapely.has_z(g) else "") for g in present})
    bounds = shapely.total_bounds(geoms)
    bbox = [float(b) for b in bounds] if not any(math.isnan(b) for b in bounds) else None
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": types}
    if bbox is not None:
        col["bbox"] = bbox
    # PROJJSON comes from pyproj's bundled PROJ, pinned by the lock. `None` means an
    # explicitly unknown CRS; GeoParquet reads a missing key as OGC:CRS84.
    col["crs"] = crs.to_json_dict() if crs is not None else None
    return {"version": GEOPARQUET_VERSION, "primary_column": column, "columns": {column: col}}


def write_geoparquet(path: Path, gdf: Any, sort_by: tuple[str, ...] | list[str] = ()) -> pa.Table:
    """Write a GeoDataFrame as GeoParquet 1.1 (WKB geometry, our own `geo` metadata)."""
    import geopandas as gpd
    import shapely

    if not isinstance(gdf, gpd.GeoDataFrame):
        raise TypeError(f"write_geoparquet expects a GeoDataFrame, got {type(gdf).__name__}")
    column = gdf.geometry.name
    geoms = gdf.geometry.values
    attrs = to_table(gdf.drop(columns=[column]).reset_index(drop=True))
    # Little-endian ISO WKB with no SRID: the same geometry always gives the same bytes.
    wkb = shapely.to_wkb(geoms, hex=False, byte_order=1, include_srid=False, flavor="iso")
    table = attrs.append_column(pa.field(column, pa.binary()), pa.array(wkb, type=pa.binary()))
    table = sort_table(table, sort_by)
    meta = geo_metadata(geoms, gdf.crs, column)
    _atomic_write_parquet(table, path, {"geo": json.dumps(meta, sort_keys=True, separators=(",", ":"))})
    return table


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
