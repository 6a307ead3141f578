"""Distance to the nearest provincial or territorial capital on a regular grid, as a COG.

A complete example to copy for a raster product, and for one too big for one machine: the
recipe shards the build by web-mercator tiles (`shards: {by: tile, level: 4, max: 4}`), so
each shard computes only the cells in its tiles and the reduce mosaics the shards' parts
into the one COG that an unsharded build writes, byte for byte (docs/scale.md).

How the sharding works here: `ctx.shard_windows(grid, columns, rows)` gives the rasterio
windows of the grid that this build computes, one per tile of its shard that holds cells (a
cell belongs to the tile its centre lies in, so no two windows share a cell); a whole build
(`d4c build --whole`, or a recipe without `shards:`) gets windows covering the whole grid.
`ctx.write_cog` takes the (window, array) pairs: a shard writes each array as a GeoTIFF part,
a whole build mosaics them itself; the pinned COG writer (GDAL's COG driver, fixed
compression, blocks and overviews) makes the artifact either way. Every cell must be a
function of its position only (here: of its row and column), never of the window's.

Band 1: great-circle distance (haversine on a sphere) from each cell centre to the
nearest capital, rounded to whole kilometres; band 2: that capital's PRUID. Rounding
keeps the last bit of the machine's trigonometric functions out of the bytes; a tie
between two capitals goes to the lower PRUID (the rows are sorted by it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from affine import Affine

if TYPE_CHECKING:  # the context type, for editors and mypy only
    from d4c.build.context import BuildContext


def build(ctx: BuildContext) -> None:
    p = ctx.params
    capitals = pd.read_csv(ctx.source("provinces-territories"), encoding="utf-8",
                           usecols=["pruid", "capital_lat", "capital_lon"],
                           dtype={"pruid": "int16", "capital_lat": "float64", "capital_lon": "float64"})
    capitals = capitals.sort_values("pruid", kind="stable").reset_index(drop=True)
    west, north, cell = float(p["west"]), float(p["north"]), float(p["cell_deg"])
    grid = Affine(cell, 0.0, west, 0.0, -cell, north)
    parts = ((w, nearest(capitals, p, w)) for w in ctx.shard_windows(grid, int(p["columns"]), int(p["rows"])))
    ctx.write_cog("distance", parts, crs="EPSG:4326", transform=grid)


def nearest(capitals: pd.DataFrame, p: dict[str, Any], window: Any) -> np.ndarray:
    """The two bands of the cells in `window` (a rasterio window of the grid)."""
    west, north, cell = float(p["west"]), float(p["north"]), float(p["cell_deg"])
    # cell centres from the grid's integer indices (no accumulated rounding, the same in any window)
    cols = np.arange(window.col_off, window.col_off + window.width, dtype="float64")
    rows = np.arange(window.row_off, window.row_off + window.height, dtype="float64")
    lon = np.radians(west + (cols + 0.5) * cell)[np.newaxis, :]
    lat = np.radians(north - (rows + 0.5) * cell)[:, np.newaxis]
    distances = np.empty((len(capitals), len(rows), len(cols)), dtype="float64")
    for i, (clat, clon) in enumerate(zip(np.radians(capitals["capital_lat"]), np.radians(capitals["capital_lon"]))):
        h = np.sin((lat - clat) / 2) ** 2 + np.cos(lat) * np.cos(clat) * np.sin((lon - clon) / 2) ** 2
        distances[i] = 2 * float(p["earth_radius_km"]) * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
    index = np.argmin(distances, axis=0)  # the first (lowest PRUID) on a tie
    km = np.rint(np.take_along_axis(distances, index[np.newaxis], axis=0)[0])
    pruid = capitals["pruid"].to_numpy()[index]
    return np.stack([km.astype("uint16"), pruid.astype("uint16")])
