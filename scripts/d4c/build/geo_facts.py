"""Manifest facts of FlatGeobuf, PMTiles and COG artifacts, read back as their users read them.

- FlatGeobuf and GeoPackage (pyogrio/GDAL): the same facts as GeoParquet; the geometry
  column is the ISO WKB GDAL returns, named `geometry`, so the logical hash covers it.
- COG (rasterio/GDAL): each band is a column (`band_<n>`, its data type, its nodata pixels
  as `nulls`); `raster` holds the grid; the logical hash covers the grid and every pixel,
  read one strip of blocks at a time.
- PMTiles (the pmtiles reader): `tiles` holds the zoom range, tile count and each layer's
  fields; the bbox is the header's bounds in degrees, the CRS the tile grid's (EPSG:3857);
  the logical hash covers every tile's decompressed bytes and the layers' fields.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa

GEOMETRY = "geometry"
# The first bytes of the files GDAL may open here. A transform writes its outputs' bytes and the
# host opens them outside the sandbox: GDAL would open a VRT under any name and read any file of
# the host (or a URL) as pixels or rows, which the facts (nulls per band, ...) would then carry.
MAGIC = {"flatgeobuf": (b"fgb\x03",), "gpkg": (b"SQLite format 3\x00",),
         "cog": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")}


def _crs_text(crs: Any) -> str | None:
    if not crs:
        return None
    from pyproj import CRS

    c = CRS.from_user_input(crs)
    auth = c.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else c.name


def _fingerprint(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sniff(path: Path, formats: tuple[str, ...]) -> None:
    """Refuse, before GDAL opens it, a file that does not start as one of `formats` starts."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not any(head.startswith(m) for f in formats for m in MAGIC[f]):
        from d4c.errors import D4CError

        raise D4CError(f"output {path.name} is not a {' or '.join(formats)} file (its first bytes are "
                       f"{head[:8]!r})", hint="write it with the context's writer (ctx.write_<format>)")


def read_flatgeobuf(path: Path) -> tuple[dict[str, Any], pa.Table]:
    """GDAL's layer info and the rows as Arrow, the geometry as ISO WKB in `geometry`."""
    import pyogrio

    sniff(path, ("flatgeobuf", "gpkg"))
    meta, table = pyogrio.read_arrow(path)
    geom = meta.get("geometry_name") or "wkb_geometry"
    names = [GEOMETRY if n == geom else n for n in table.column_names]
    table = table.rename_columns(names).replace_schema_metadata(None)
    if GEOMETRY in names:  # GDAL marks it as an Arrow extension type: compare plain bytes
        i = names.index(GEOMETRY)
        table = table.set_column(i, pa.field(GEOMETRY, pa.binary()), table.column(i).cast(pa.binary()))
    return meta, table


def flatgeobuf_facts(path: Path) -> dict[str, Any]:
    import shapely

    from d4c.build.logical import table_facts

    meta, table = read_flatgeobuf(path)
    facts = table_facts(table)
    geoms = shapely.from_wkb(table.column(GEOMETRY).to_numpy(zero_copy_only=False)) \
        if GEOMETRY in table.column_names else []
    present = [g for g in geoms if g is not None and not g.is_empty]
    bounds = shapely.total_bounds(present) if present else [math.nan] * 4
    facts.update({
        "geometry_types": sorted({g.geom_type + (" Z" if shapely.has_z(g) else "") for g in present}),
        "crs": _crs_text(meta.get("crs")),
        "bbox": None if any(math.isnan(b) for b in bounds) else [float(b) for b in bounds],
    })
    return facts


def _band_name(i: int) -> str:
    return f"band_{i}"


def cog_facts(path: Path) -> dict[str, Any]:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    sniff(path, ("cog",))
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, driver="GTiff") as src:
        grid = {
            "width": src.width, "height": src.height, "bands": src.count, "dtypes": list(src.dtypes),
            "nodata": src.nodata,
            "transform": [float(v) for v in tuple(src.transform)[:6]],
            "overviews": src.overviews(1) if src.count else [],
            "block": list(src.block_shapes[0]) if src.count else [],
            "compression": src.compression.name.upper() if src.compression else None,
            "layout": src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
        }
        crs = _crs_text(src.crs.to_wkt()) if src.crs else None
        if isinstance(grid["nodata"], float) and math.isnan(grid["nodata"]):
            grid["nodata"] = "nan"  # JSON has no NaN
        h = hashlib.sha256(json.dumps({k: grid[k] for k in ("width", "height", "bands", "dtypes", "nodata",
                                                             "transform")}, sort_keys=True).encode())
        h.update(str(crs).encode() + b"\n")
        nulls = [0] * src.count
        step = max(src.block_shapes[0][0], 1) if src.count else 1
        for band in range(1, src.count + 1):
            for row in range(0, src.height, step):
                window = Window(0, row, src.width, min(step, src.height - row))
                data = src.read(band, window=window)
                h.update(np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes())
                if src.nodata is not None:
                    hit = np.isnan(data) if math.isnan(src.nodata) else data == src.nodata
                    nulls[band - 1] += int(hit.sum())
        bounds = [float(b) for b in src.bounds]
    columns = [{"name": _band_name(i + 1), "type": t, "nulls": nulls[i]} for i, t in enumerate(grid["dtypes"])]
    return {
        "rows": None, "columns": columns, "schema_fingerprint": _fingerprint([grid["dtypes"], grid["nodata"]]),
        "logical_sha256": h.hexdigest(), "geometry_types": [], "crs": crs, "bbox": bounds, "raster": grid,
    }


def pmtiles_facts(path: Path) -> dict[str, Any]:
    import mmap

    from pmtiles.tile import Compression, deserialize_header, tileid_to_zxy

    from d4c.build import pmtiles_bounded as rp

    with open(path, "rb") as fh:
        if fh.read(7) != b"PMTiles":  # the reader's own error for this is no ValueError
            raise ValueError("not a PMTiles archive (no PMTiles magic number)")
        view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    with view:
        header = deserialize_header(view[0:127])
        meta = rp.metadata(view[header["metadata_offset"]:header["metadata_offset"] + header["metadata_length"]],
                           header)
        if not isinstance(meta, dict):
            raise ValueError("its metadata is not a JSON object")  # noqa: TRY004 - describe() reports ValueErrors
        gz = header["tile_compression"] == Compression.GZIP
        h = hashlib.sha256()
        count = 0
        # bounded throughout: the host reads a transform's archive, a gzip bomb or a leaf
        # directory pointing at itself must not take its memory or its stack (pmtiles_bounded)
        for tile_id, data in rp.walk(view, header):
            z, x, y = tileid_to_zxy(tile_id)
            plain = rp.gunzip(data, rp.MAX_TILE_BYTES, f"tile {z}/{x}/{y}") if gz else data
            h.update(f"{z}/{x}/{y}:".encode() + hashlib.sha256(plain).digest())
            count += 1
    stats = {s.get("layer"): s for s in (meta.get("tilestats") or {}).get("layers") or []}
    layers = []
    for layer in sorted(meta.get("vector_layers") or [], key=lambda v: str(v.get("id"))):
        s = stats.get(layer.get("id")) or {}
        layers.append({"name": str(layer.get("id")), "fields": dict(sorted((layer.get("fields") or {}).items())),
                       "min_zoom": layer.get("minzoom"), "max_zoom": layer.get("maxzoom"),
                       "features": s.get("count"), "geometry": s.get("geometry")})
    h.update(json.dumps([[v["name"], v["fields"]] for v in layers], sort_keys=True).encode())
    counts = [v["features"] for v in layers]
    tiles = {"min_zoom": header["min_zoom"], "max_zoom": header["max_zoom"], "tile_count": count,
             "tile_type": header["tile_type"].name.lower(), "tile_compression": header["tile_compression"].name.lower(),
             "layers": layers}
    bbox = [header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")]
    return {
        "rows": sum(counts) if counts and all(isinstance(c, int) for c in counts) else None,
        "columns": [], "schema_fingerprint": _fingerprint([[v["name"], v["fields"]] for v in layers]),
        "logical_sha256": h.hexdigest(), "geometry_types": sorted({str(v["geometry"]) for v in layers if v["geometry"]}),
        "crs": "EPSG:3857", "bbox": bbox, "tiles": tiles,
    }


DESCRIBE = {"flatgeobuf": flatgeobuf_facts, "gpkg": flatgeobuf_facts, "cog": cog_facts, "pmtiles": pmtiles_facts}
