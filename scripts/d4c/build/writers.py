"""Deterministic writers: the same table always gives the same bytes (the order and the
Parquet settings are d4c.build.sorting's).

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

from d4c.atomic import publish, temp_path
from d4c.build import sorting
from d4c.build.sorting import is_stream, sorted_groups, to_table, write_sorted

GEOPARQUET_VERSION = "1.1.0"

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
    elif not is_stream(data) or isinstance(data, pa.Table):
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
        for start in range(0, max(len(self.gdf), 1), sorting.ROW_GROUP_ROWS):
            yield self.gdf.iloc[start:start + sorting.ROW_GROUP_ROWS]


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


def write_csv(path: Path, data: Any, sort_by: tuple[str, ...] | list[str] = ()) -> int:
    """Write sorted CSV: UTF-8, LF line ends, header, minimal quoting, fixed number forms.

    `data` is a table or DataFrame, or a stream as for write_parquet: the rows come sorted one
    row group at a time (d4c.build.sorting, DuckDB's external sort for a big stream), so memory
    stays bounded and the same rows give the same bytes however they arrive. Returns the rows."""
    rows = 0
    tmp = temp_path(path)
    try:
        with sorted_groups(path, data, sort_by) as (schema, groups), \
                open(tmp, "w", encoding="utf-8", newline="") as fh:
            out = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            out.writerow(schema.names)
            for group in groups:
                cols = [c.to_pylist() for c in group.columns]
                out.writerows([_cell(v) for v in row] for row in zip(*cols))
                rows += group.num_rows
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, path, durable=False)  # a build folder, published whole by the pipeline
    return rows
