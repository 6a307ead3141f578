"""The COG mosaic of a `by: tile` reduce refuses a shard's part outside that shard's tiles, even
when the parts together tile the grid (one shard wrote every cell, the others none)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from d4c.build import reduce_cog, tiles
from d4c.build.shard_reduce import ShardFile
from d4c.errors import D4CError

GRID = Affine(0.1, 0.0, -141.0, 0.0, -0.1, 83.5)  # the raster demo's grid, 890 x 420 cells
CANADA = [-141.0, 41.5, -52.0, 83.5]


def _part(path: Path, row: int, col: int, height: int, width: int) -> Path:
    data = np.ones((1, height, width), dtype="uint16")
    reduce_cog.write_part(path, data, transform=GRID @ Affine.translation(col, row), crs="EPSG:4326", nodata=None)
    return path


def test_a_part_outside_its_shards_tiles_fails_the_reduce(tmp_path: Path) -> None:
    runs = tiles.cut(tiles.covering(CANADA, 4), 4)
    whole = _part(tmp_path / "whole.tif", 0, 0, 420, 890)
    files = [ShardFile(2, whole, tuple(runs[1]))]  # shard 2 gives every cell; shards 1, 3, 4 none
    with pytest.raises(D4CError, match=r"shard 2's whole.tif reaches outside shard 2's tiles") as err:
        reduce_cog.mosaic(None, files, tmp_path / "out.tif")
    assert "ctx.shard_windows" in err.value.line()
    assert not (tmp_path / "out.tif").exists()
    # the honest parts: each shard's windows of its own tiles, the same grid mosaicked
    honest = [ShardFile(k + 1, _part(tmp_path / f"s{k + 1}-{i}.tif", r, c, h, w), tuple(run))
              for k, run in enumerate(runs) for i, (r, c, h, w) in enumerate(tiles.windows(run, GRID, 890, 420))]
    reduce_cog.mosaic(None, honest, tmp_path / "out.tif")
    import rasterio

    with rasterio.open(tmp_path / "out.tif") as src:
        assert (src.width, src.height) == (890, 420) and int(src.read(1).min()) == 1


def test_a_part_that_is_not_a_geotiff_fails_the_reduce(tmp_path: Path) -> None:
    """A transform writes its part files' bytes: a VRT there would make GDAL, in the reduce (outside
    the sandbox), read any file of the machine into the artifact. Parts open as GeoTIFF only."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET-" * 100)
    vrt = _part(tmp_path / "p.part-0001.tif", 0, 0, 10, 10)
    vrt.write_text(
        f'<VRTDataset rasterXSize="10" rasterYSize="10"><SRS>EPSG:4326</SRS>'
        f'<GeoTransform>-141.0, 0.1, 0.0, 83.5, 0.0, -0.1</GeoTransform>'
        f'<VRTRasterBand dataType="UInt16" band="1" subClass="VRTRawRasterBand"><ColorInterp>Gray</ColorInterp>'
        f'<SourceFilename relativetoVRT="0">{secret}</SourceFilename><ImageOffset>0</ImageOffset>'
        f'<PixelOffset>2</PixelOffset><LineOffset>20</LineOffset></VRTRasterBand></VRTDataset>')
    junk = tmp_path / "q.part-0001.tif"
    junk.write_bytes(b"not a tiff")
    for part in (vrt, junk):
        with pytest.raises(D4CError, match=rf"shard 1's {part.name} is not a GeoTIFF"):
            reduce_cog.mosaic(None, [ShardFile(1, part)], tmp_path / "out.tif")
        assert not (tmp_path / "out.tif").exists()
