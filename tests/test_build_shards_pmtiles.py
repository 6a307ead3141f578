"""The PMTiles merge of `shards: {by: tile}` parts (d4c.build.reduce_pmtiles): the parts of a
tile partition, merged in any order, give the bytes of one part over all the tiles; the low
zooms rebuilt from their children hold every point once; a part with a tile outside its
tiles, a tile given twice, or no PMTiles at all fails in one line."""
from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import pandas as pd
import pytest
import shapely
from d4c.build import geo_writers, reduce_pmtiles
from d4c.errors import D4CError
from pmtiles.reader import MmapSource, Reader

POINTS, LINES, LEVEL = 240, 24, 2


def features_csv() -> bytes:
    """Points and lines over Canada; a few points sit on the level-2 tiles' edges (lon -90, and
    lat 66.51326, the edge between tile rows 0 and 1), where two tiles' buffers hold them."""
    rng = random.Random(15)
    rows = ["id,name,kind,wkt"]
    edge = [(-90.0, 50.0), (-90.0, 60.0), (-100.0, 66.5132604), (-75.0, 66.5132604)]
    for i in range(POINTS):
        x, y = edge[i] if i < len(edge) else (rng.uniform(-140, -53), rng.uniform(42, 82))
        rows.append(f"{i},p{i},point,POINT ({x:.6f} {y:.6f})")
    for i in range(LINES):
        coords = ", ".join(f"{rng.uniform(-140, -53):.6f} {rng.uniform(42, 82):.6f}" for _ in range(4))
        rows.append(f"{POINTS + i},l{i},line,\"LINESTRING ({coords})\"")
    return ("\n".join(rows) + "\n").encode()


def z0_features(path: Path) -> list[dict]:
    with open(path, "rb") as fh:
        tile = Reader(MmapSource(fh)).get(0, 0, 0)
    return mapbox_vector_tile.decode(gzip.decompress(tile))["tiles"]["features"]


def frame() -> gpd.GeoDataFrame:
    table = pd.read_csv(io.BytesIO(features_csv()), dtype={"name": "string", "kind": "string", "wkt": "string"})
    return gpd.GeoDataFrame(table.drop(columns=["wkt"]), geometry=shapely.from_wkt(table["wkt"]), crs="EPSG:4326")


def test_tile_set_and_the_features_near_it() -> None:
    tiles = reduce_pmtiles.TileSet.of([(2, 0, 1), (2, 1, 1)])
    assert tiles.holds(2, 0, 1) and tiles.holds(5, 15, 8) and not tiles.holds(5, 16, 15) and not tiles.holds(1, 0, 0)
    geoms = gpd.GeoSeries.from_wkt(["POINT (-100 50)", "POINT (-100 70)", "POINT (-100 67)", "POINT (100 -50)",
                                    "LINESTRING (-10 -60, 100 80)", "POINT EMPTY"]).values
    # row 1 starts at 66.51 N: 67 N is inside half a tile of it, 70 N too; the far point and the empty one are not
    assert reduce_pmtiles.select(geoms, tiles).tolist() == [True, True, True, False, True, False]
    assert reduce_pmtiles.select(geoms, tiles, margin=0.0).tolist() == [True, False, False, False, True, False]
    with pytest.raises(ValueError, match="at one zoom"):
        reduce_pmtiles.TileSet.of([(2, 0, 1), (3, 0, 1)])


def test_parts_merge_into_the_archive_of_one_part(tmp_path: Path) -> None:
    """The merge itself: three parts give the bytes of one part over all their tiles, and hostile
    parts fail in one line."""
    every = [(LEVEL, x, y) for x in range(2) for y in range(2)]  # Canada's level-2 tiles
    sets = [reduce_pmtiles.TileSet.of(every[:1]), reduce_pmtiles.TileSet.of(every[1:2]),
            reduce_pmtiles.TileSet.of(every[2:])]
    data = frame()
    parts = []
    for n, tiles in enumerate(sets, 1):
        geo_writers.write_pmtiles(tmp_path / f"{n}.pmtiles", data, ["id"], layer="tiles", max_zoom=4, tiles=tiles)
        parts.append(reduce_pmtiles.Part(f"shard {n}", tmp_path / f"{n}.pmtiles", tiles))
    reduce_pmtiles.finish(parts[::-1], tmp_path / "merged.pmtiles")
    geo_writers.write_pmtiles(tmp_path / "whole.pmtiles", data, ["id"], layer="tiles", max_zoom=4,
                              tiles=reduce_pmtiles.TileSet.of(every), finish=True)
    assert (tmp_path / "merged.pmtiles").read_bytes() == (tmp_path / "whole.pmtiles").read_bytes()
    points = [f for f in z0_features(tmp_path / "merged.pmtiles") if f["geometry"]["type"] == "Point"]
    assert len(points) == len({f["properties"]["name"] for f in points}) == POINTS
    with pytest.raises(D4CError, match=r"shard 2's PMTiles holds tile 2/0/0, outside its tiles"):
        reduce_pmtiles.finish([parts[0]._replace(label="shard 2", tiles=sets[1])], tmp_path / "x.pmtiles")
    with pytest.raises(D4CError, match=r"tile 2/0/0 comes from both shard 1 and shard 2"):
        reduce_pmtiles.finish([parts[0], parts[0]._replace(label="shard 2")], tmp_path / "x.pmtiles")
    for junk, why in ((b"", "is not a PMTiles v3 archive"), (b"PMTiles\x02" + bytes(200), "is not a PMTiles v3"),
                      (parts[0].path.read_bytes()[:400], "is unreadable")):
        (tmp_path / "junk.pmtiles").write_bytes(junk)
        with pytest.raises(D4CError, match=why):
            reduce_pmtiles.finish([parts[0]._replace(path=tmp_path / "junk.pmtiles")], tmp_path / "x.pmtiles")
    with pytest.raises(ValueError, match="needs a fixed max_zoom >= the shard level 2"):
        geo_writers.write_pmtiles(tmp_path / "y.pmtiles", data, layer="tiles", max_zoom=None, tiles=sets[0])
