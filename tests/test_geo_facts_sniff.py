"""The host describes a transform's COG, FlatGeobuf and GeoPackage outputs with GDAL, outside the
sandbox: a VRT written under the output's name would make GDAL read any file of the host into
the manifest's facts. Such a file is refused before GDAL opens it; the real formats pass."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from d4c.build import geo_facts, geo_writers
from d4c.errors import D4CError
from shapely.geometry import Point


def _raster_vrt(secret: Path) -> str:
    return (f'<VRTDataset rasterXSize="8" rasterYSize="2"><SRS>EPSG:4326</SRS>'
            f'<GeoTransform>-127.0, 0.25, 0.0, 66.0, 0.0, -0.25</GeoTransform>'
            f'<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
            f'<SourceFilename relativetoVRT="0">{secret}</SourceFilename><ImageOffset>0</ImageOffset>'
            f'<PixelOffset>1</PixelOffset><LineOffset>8</LineOffset></VRTRasterBand></VRTDataset>')


def _vector_vrt(secret: Path) -> str:
    return (f'<OGRVRTDataSource><OGRVRTLayer name="x"><SrcDataSource>CSV:{secret}</SrcDataSource>'
            f'</OGRVRTLayer></OGRVRTDataSource>')


def test_a_vrt_in_place_of_an_output_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\nSECRET-SECRET\n")
    tif, fgb, gpkg = tmp_path / "x.tif", tmp_path / "x.fgb", tmp_path / "x.gpkg"
    tif.write_text(_raster_vrt(secret))
    with pytest.raises(D4CError, match=r"output x.tif is not a cog file \(its first bytes are b'<VRTData'\)"):
        geo_facts.cog_facts(tif)
    for path in (fgb, gpkg):
        path.write_text(_vector_vrt(secret))
        with pytest.raises(D4CError, match=rf"output {path.name} is not a flatgeobuf or gpkg file"):
            geo_facts.flatgeobuf_facts(path)


def test_the_real_formats_pass(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"k": [1, 2]}, geometry=[Point(-75.7, 45.4), Point(-79.4, 43.7)], crs="EPSG:4326")
    geo_writers.write_flatgeobuf(tmp_path / "x.fgb", frame, ["k"])
    geo_writers.write_gpkg(tmp_path / "x.gpkg", frame, ["k"])
    for path in (tmp_path / "x.fgb", tmp_path / "x.gpkg"):
        assert geo_facts.flatgeobuf_facts(path)["geometry_types"] == ["Point"]
    geo_writers.write_cog(tmp_path / "x.tif", np.ones((1, 4, 4), "uint8"), transform=Affine(1, 0, 0, 0, -1, 4),
                          crs="EPSG:4326")
    assert geo_facts.cog_facts(tmp_path / "x.tif")["raster"]["layout"] == "COG"


def test_a_tile_bomb_in_a_pmtiles_output_is_refused(tmp_path: Path) -> None:
    """The host inflates every tile of a transform's PMTiles for the logical hash: bounded."""
    import gzip

    from d4c.build import pmtiles_bounded, reduce_pmtiles
    from pmtiles.tile import zxy_to_tileid

    bomb = gzip.compress(bytes(pmtiles_bounded.MAX_TILE_BYTES + 1), compresslevel=9, mtime=0)
    path = tmp_path / "bomb.pmtiles"
    reduce_pmtiles.write_archive(path, [(zxy_to_tileid(2, 0, 0), bomb)], (0, 0, 0, 0), 0,
                                 {"name": "tiles", "minzoom": "0", "vector_layers": []})
    with pytest.raises(ValueError, match="tile 2/0/0 inflates past 64 MiB"):
        geo_facts.pmtiles_facts(path)
