"""Web-mercator XYZ tiles for `shards: {by: tile}`: the tiles at a zoom level that meet a
bounding box, their order, their lon/lat bounds, and which cells of a raster grid each holds.

The tiles are the ones PMTiles and every web map use (x east from 180° W, y south from
85.0511° N, 2^z of each per zoom). The math is the usual few lines (the OSM wiki's "Slippy
map tilenames"), written here rather than taken from mercantile, which is not in our locks
(morecantile is, for tests only: tests/test_build_shards_tiles.py checks these against it).
Tile ids are PMTiles' (`pmtiles.tile.zxy_to_tileid`, Hilbert order within a zoom): a run of
ids at level Z holds, at every deeper zoom, a run of ids too, which the PMTiles merge relies on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Tile = tuple[int, int, int]  # (z, x, y)
MAX_LAT = 85.0511287798066  # atan(sinh(pi)): the square's edge
EDGE = 1e-9  # of a tile: a bbox edge this close to a tile edge is on it (the float noise of _fy)
MAX_TILES = 1 << 16  # a partition enumerates its tiles: refuse a level that would hold more


def _fx(lon: float, z: int) -> float:
    return (lon + 180.0) / 360.0 * (1 << z)


def _fy(lat: float, z: int) -> float:
    phi = math.radians(max(-MAX_LAT, min(MAX_LAT, lat)))
    return (1.0 - math.asinh(math.tan(phi)) / math.pi) / 2.0 * (1 << z)


def tile_id(tile: Sequence[int]) -> int:
    from pmtiles.tile import zxy_to_tileid

    return int(zxy_to_tileid(int(tile[0]), int(tile[1]), int(tile[2])))


def covering(bbox: Sequence[float], level: int) -> list[Tile]:
    """The tiles at `level` whose interior meets `bbox` (west, south, east, north; degrees),
    in tile-id order. A bbox edge on a tile edge (within EDGE) takes no tile beyond it."""
    west, south, east, north = (float(v) for v in bbox)
    if not (-180.0 <= west <= east <= 180.0 and -90.0 <= south <= north <= 90.0):
        raise ValueError(f"spatial.bbox {list(bbox)} is not [west, south, east, north] in degrees with "
                         "west <= east and south <= north")
    last = (1 << level) - 1
    x0, y0 = min(last, math.floor(_fx(west, level) + EDGE)), min(last, math.floor(_fy(north, level) + EDGE))
    x1 = max(x0, min(last, math.ceil(_fx(east, level) - EDGE) - 1))
    y1 = max(y0, min(last, math.ceil(_fy(south, level) - EDGE) - 1))
    count = (x1 - x0 + 1) * (y1 - y0 + 1)
    if count > MAX_TILES:
        raise ValueError(f"level {level} gives {count} tiles over spatial.bbox, more than {MAX_TILES}")
    return sorted(((level, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)), key=tile_id)


def cut(tiles: Sequence[Tile], count: int) -> list[list[Tile]]:
    """`count` contiguous runs of the tiles (in the order given), as even as whole tiles allow."""
    n = len(tiles)
    return [list(tiles[k * n // count:(k + 1) * n // count]) for k in range(count)]


def bounds(tile: Sequence[int]) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in degrees."""
    z, x, y = (int(v) for v in tile)
    n = 1 << z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)


def _runs(index: Any) -> dict[int, tuple[int, int]]:
    """{tile column or row: (first, stop)} of a monotonic array of tile indices."""
    found: dict[int, tuple[int, int]] = {}
    for i, v in enumerate(index.tolist()):
        first, _ = found.get(v, (i, i))
        found[v] = (first, i + 1)
    return found


def _cells(transform: Any, width: int, height: int, z: int) -> tuple[Any, Any]:
    """The tile column of each grid column and the tile row of each grid row, at zoom `z`: the
    tile each cell's centre lies in (west and north edges inside), for a north-up lon/lat grid."""
    import numpy as np

    if transform.b or transform.d or transform.a <= 0 or transform.e >= 0:
        raise ValueError("a `by: tile` raster needs a north-up grid (no rotation)")
    lon = transform.c + transform.a * (np.arange(width, dtype="float64") + 0.5)
    lat = np.radians(np.clip(transform.f + transform.e * (np.arange(height, dtype="float64") + 0.5),
                             -MAX_LAT, MAX_LAT))
    xs = np.floor((lon + 180.0) / 360.0 * (1 << z)).astype("int64")
    ys = np.floor((1.0 - np.arcsinh(np.tan(lat)) / math.pi) / 2.0 * (1 << z)).astype("int64")
    return xs, ys


def windows(tiles: Sequence[Tile], transform: Any, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(row_off, col_off, rows, cols) of the grid's cells in each tile, for the tiles (in the
    order given) holding any: every cell is in one tile only, so no two windows share a cell."""
    out = []
    for z in sorted({t[0] for t in tiles}):
        xs, ys = _cells(transform, width, height, z)
        cols, rows = _runs(xs), _runs(ys)
        for _, x, y in (t for t in tiles if t[0] == z):
            if x in cols and y in rows:
                (c0, c1), (r0, r1) = cols[x], rows[y]
                out.append((r0, c0, r1 - r0, c1 - c0))
    return out


def held(tiles: Sequence[Tile], transform: Any, width: int, height: int) -> bool:
    """Whether every cell of the grid (a part) lies in one of `tiles` (all at one zoom)."""
    if not tiles:
        return False
    xs, ys = _cells(transform, width, height, tiles[0][0])
    own = {(x, y) for _, x, y in tiles}
    return all((x, y) in own for x in set(xs.tolist()) for y in set(ys.tolist()))


def check_inside(bbox: Sequence[float], transform: Any, width: int, height: int) -> None:
    """Refuse a grid whose cell centres reach beyond `bbox`: its tiles cover the bbox only, so
    such cells would be in no shard."""
    west, south, east, north = bbox
    x = (transform.c + transform.a * 0.5, transform.c + transform.a * (width - 0.5))
    y = (transform.f + transform.e * (height - 0.5), transform.f + transform.e * 0.5)
    if x[0] < west or x[1] > east or y[0] < south or y[1] > north:
        raise ValueError(f"the grid's cell centres span [{x[0]}, {y[0]}, {x[1]}, {y[1]}], beyond spatial.bbox "
                         f"{list(bbox)}: a `by: tile` partition covers the bbox only (widen the bbox)")
