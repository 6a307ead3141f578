"""COG outputs of a sharded build: the GeoTIFF parts a shard writes, and the mosaic of them.

A shard (and a whole build handed parts) writes each array it computes as a plain tiled
GeoTIFF part, `<artifact stem>.part-NNNN.tif`, with the part's own georeferencing. The
reduce reads every shard's parts, checks that they lie on one grid (CRS, cell size,
alignment, bands, type, nodata), overlap nowhere and fill their bounding rectangle, lists
them in one GDAL VRT (sources in row, then column order) and copies that through the pinned
COG writer (geo_writers.copy_cog): the same pixels and georeferencing as one array written
whole, so the same bytes. docs/scale.md.
"""
from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from d4c.atomic import publish, temp_path
from d4c.errors import D4CError

PART = re.compile(r"\.part-([0-9]{4,})\.tif\Z")
# A part is scratch between a shard and the reduce, but its bytes are hashed in shard.json:
# every setting that could default differently is fixed here.
PART_OPTIONS = {"TILED": "YES", "BLOCKXSIZE": "512", "BLOCKYSIZE": "512", "COMPRESS": "DEFLATE",
                "PREDICTOR": "2", "BIGTIFF": "IF_SAFER", "NUM_THREADS": "1"}
ALIGN = 1e-6  # of a cell: how far a part's origin may sit from the grid's lines (float noise)


def part_path(artifact: Path, number: int) -> Path:
    """Part `number` (1-based) of the artifact at `artifact`: beside it, `<stem>.part-0001.tif`."""
    return artifact.with_name(f"{artifact.stem}.part-{number:04d}.tif")


def part_names(names: Iterable[str], artifact: str) -> list[str]:
    """The part file names of `artifact` among `names`, in number order."""
    stem = Path(artifact).stem
    found = [n for n in names if n.startswith(stem + ".") and PART.fullmatch(n[len(stem):])]
    return sorted(found, key=lambda n: int(PART.search(n).group(1)))  # type: ignore[union-attr]


def write_part(path: Path, array: Any, *, transform: Any, crs: Any, nodata: float | None) -> None:
    """One (bands, rows, cols) array as a part at `path`."""
    import rasterio

    from d4c.build.geo_writers import gdal_config

    count, height, width = array.shape
    tmp = temp_path(path)
    with rasterio.Env(**gdal_config()), rasterio.open(
            tmp, "w", driver="GTiff", width=width, height=height, count=count, dtype=array.dtype, crs=crs,
            transform=transform, nodata=nodata, **PART_OPTIONS) as dst:
        dst.write(array)
    publish(tmp, path, durable=False)


def write_parts(artifact: Path, pairs: Iterable[tuple[Any, Any]], *, transform: Any, crs: Any,
                nodata: float | None, tiles: tuple[tuple[int, int, int], ...], whole: bool) -> None:
    """`ctx.write_cog` of parts: each (rasterio window or None, array) on the grid `transform`. A shard
    writes them beside the artifact, numbered on from its earlier parts; those of a `by: tile`
    shard must lie in its `tiles`. A whole build mosaics them into the artifact."""
    import numpy as np
    from rasterio.windows import transform as window_transform

    from d4c.build import tiles as tile_math

    with tempfile.TemporaryDirectory(prefix=".d4c-parts-", dir=artifact.parent) as work:
        base = Path(work) / artifact.name if whole else artifact
        number = len(part_names((p.name for p in artifact.parent.iterdir()), artifact.name)) if not whole else 0
        written = []
        for window, data in pairs:
            array = np.asarray(data)
            array = array[np.newaxis] if array.ndim == 2 else array
            if array.ndim != 3:
                raise ValueError(f"write_cog expects 2-D or 3-D arrays, got {array.ndim} dimensions")
            at = transform if window is None else window_transform(window, transform)
            if window is not None and (int(window.height), int(window.width)) != array.shape[1:]:
                raise ValueError(f"a part of {array.shape[2]} x {array.shape[1]} cells for a window of "
                                 f"{int(window.width)} x {int(window.height)}")
            if tiles and not tile_math.held(tiles, at, array.shape[2], array.shape[1]):
                raise ValueError(f"a part at {window or at} reaches outside this shard's tiles; "
                                 "write only the windows ctx.shard_windows gives")
            number += 1
            write_part(part_path(base, number), array, transform=at, crs=crs, nodata=nodata)
            written.append((f"part {number}", part_path(base, number)))
        if whole:
            mosaic_parts(written, artifact)


def open_part(label: str, path: Path) -> Any:
    """A part as GDAL's GTiff driver reads it, and no other: a part is a shard's file, written by
    the transform, and GDAL would open a VRT in its place that reads any file of the reducing
    machine (or a URL) into the artifact. The VRT of the mosaic then reopens these same bytes."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        return rasterio.open(path, driver="GTiff")
    except RasterioIOError:
        raise D4CError(f"{label} is not a GeoTIFF", hint="rebuild that shard with `d4c build ID --shard N/M`: "
                       "its parts are the GeoTIFFs ctx.write_cog writes") from None


class Placed(NamedTuple):
    label: str  # "shard 2's part ..." for messages
    path: Path
    row: int
    col: int
    height: int
    width: int


def _grid(label: str, src: Any) -> tuple[Any, ...]:
    t = src.transform
    if t.b or t.d:
        raise D4CError(f"{label} is rotated", hint="write north-up parts (an affine without rotation)")
    return (src.crs, t.a, t.e, src.count, src.dtypes, src.nodata, src.colorinterp)


def place(parts: list[tuple[str, Path]]) -> tuple[list[Placed], dict[str, Any]]:
    """Every part's window on the common grid, checked; and the grid (origin, size, facts)."""
    facts: list[tuple[Any, ...]] = []
    origins = []
    for label, path in parts:
        with open_part(label, path) as src:
            facts.append(_grid(label, src))
            origins.append((src.transform.c, src.transform.f, src.height, src.width))
        if facts[-1] != facts[0]:
            raise D4CError(f"{label} is not on the grid of {parts[0][0]} (CRS, cell size, bands, type or nodata)",
                           hint="write every part of an output with the same grid and data type")
    crs, a, e = facts[0][:3]
    x0, y0 = min(o[0] for o in origins), max(o[1] for o in origins)
    placed = []
    for (label, path), (x, y, h, w) in zip(parts, origins):
        col, row = (x - x0) / a, (y - y0) / e
        if abs(col - round(col)) > ALIGN or abs(row - round(row)) > ALIGN:
            raise D4CError(f"{label} does not sit on the grid's cell lines", hint="cut parts at whole cells")
        placed.append(Placed(label, path, round(row), round(col), h, w))
    return sorted(placed, key=lambda p: (p.row, p.col, p.label)), {
        "crs": crs, "x0": x0, "y0": y0, "a": a, "e": e, "facts": facts[0]}


def check_cover(placed: list[Placed]) -> tuple[int, int]:
    """The parts overlap nowhere and fill their bounding rectangle; returns (rows, cols)."""
    rows = max(p.row + p.height for p in placed)
    cols = max(p.col + p.width for p in placed)
    for i, p in enumerate(placed):
        for q in placed[i + 1:]:
            if q.row >= p.row + p.height:
                break  # sorted by row: no later part starts above p's bottom
            if q.col < p.col + p.width and p.col < q.col + q.width:
                raise D4CError(f"{p.label} and {q.label} overlap", hint="write each cell in one part only "
                               "(a `by: tile` shard: only its tiles' windows, ctx.shard_windows)")
    if sum(p.height * p.width for p in placed) != rows * cols:
        raise D4CError(f"the parts leave cells of the {cols} x {rows} grid empty",
                       hint="every cell of the output must be written by one shard")
    return rows, cols


def vrt(placed: list[Placed], grid: dict[str, Any], rows: int, cols: int) -> bytes:
    """The VRT of the parts: every band a list of simple sources at their windows."""
    _, _, _, count, dtypes, nodata, colorinterp = grid["facts"]
    from rasterio.dtypes import _gdal_typename

    root = ET.Element("VRTDataset", rasterXSize=str(cols), rasterYSize=str(rows))
    ET.SubElement(root, "SRS").text = grid["crs"].to_wkt() if grid["crs"] else ""
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in (grid["x0"], grid["a"], 0.0, grid["y0"], 0.0, grid["e"]))
    meta = ET.SubElement(root, "Metadata")
    ET.SubElement(meta, "MDI", key="AREA_OR_POINT").text = "Area"
    for b in range(1, count + 1):
        band = ET.SubElement(root, "VRTRasterBand", dataType=_gdal_typename(dtypes[b - 1]), band=str(b))
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = repr(float(nodata))
        ET.SubElement(band, "ColorInterp").text = colorinterp[b - 1].name.capitalize()
        for p in placed:
            src = ET.SubElement(band, "SimpleSource")
            ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = str(p.path)
            ET.SubElement(src, "SourceBand").text = str(b)
            ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(p.width), ySize=str(p.height))
            ET.SubElement(src, "DstRect", xOff=str(p.col), yOff=str(p.row), xSize=str(p.width), ySize=str(p.height))
    return ET.tostring(root)


def mosaic_parts(parts: list[tuple[str, Path]], dest: Path) -> None:
    """The COG at `dest` from the parts (label, path): checked, through one VRT."""
    import rasterio

    from d4c.build.geo_writers import copy_cog

    if not parts:
        raise D4CError(f"no part of {dest.name} was written", hint="write the output's cells with ctx.write_cog")
    placed, grid = place(parts)
    rows, cols = check_cover(placed)
    with tempfile.TemporaryDirectory(prefix=".d4c-mosaic-", dir=dest.parent) as work:
        path = Path(work) / "mosaic.vrt"
        path.write_bytes(vrt(placed, grid, rows, cols))
        with rasterio.open(path) as src:
            copy_cog(src, dest)


def mosaic(output: Any, shard_files: list[Any], dest: Path) -> None:
    """The reducer of `cog` outputs (shard_reduce.REDUCERS): every shard's parts, one COG. A
    `by: tile` shard's parts must lie in its tiles here too: the writer's check runs in the
    sandbox, which a transform writing its own part files bypasses, and one shard's part over
    every tile (the others writing nothing) would pass the mosaic's other checks."""
    parts = [(f"shard {f.shard}'s {f.path.name}", f.path) for f in shard_files]
    for (label, path), f in zip(parts, shard_files):
        if f.tiles:
            _check_held(label, path, f.tiles, f.shard)
    mosaic_parts(parts, dest)


def _check_held(label: str, path: Path, tiles: Any, shard: int) -> None:
    from d4c.build import tiles as tile_math

    with open_part(label, path) as src:
        inside = tile_math.held(tiles, src.transform, src.width, src.height)
    if not inside:
        raise D4CError(f"{label} reaches outside shard {shard}'s tiles",
                       hint="a `by: tile` shard writes only its tiles' cells (the windows of ctx.shard_windows)")
