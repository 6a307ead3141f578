"""The object a transform receives: verified sources, params, and deterministic writers.

```python
def build(ctx: BuildContext) -> None:
    df = pd.read_csv(ctx.source("population"))
    ctx.write_parquet("table", df)
```
Only declared names are accepted, so a typo fails with the list of valid names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d4c.build import geo_writers, reduce_cog, reduce_pmtiles, writers
from d4c.build import tiles as tile_math


class ContextError(KeyError):
    """A transform asked for a source or output that the recipe does not declare."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class OutputSpec:
    name: str
    format: str
    path: Path
    sort_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShardView:
    """This build's part of a sharded recipe (`shards:`): shard `index` of `count` (1-based) and
    its files, each (source name, path), in sha256 order (`by: tile`: every source). An
    unsharded build is shard 1 of 1, with every file and every tile."""

    index: int
    count: int
    files: tuple[tuple[str, Path], ...]
    key: str | None = None  # `by: row_range`: the column whose sorted order is cut
    tiles: tuple[tuple[int, int, int], ...] = ()  # `by: tile`: this shard's (z, x, y), in tile-id order
    bbox: tuple[float, ...] | None = None  # `by: tile`: the recipe's spatial.bbox, which the tiles cover
    parts: bool = False  # a shard of a build (not a whole one): COG outputs are written as parts

    def rows(self, n: int) -> tuple[int, int]:
        """[start, stop) of this shard's rows among `n` rows in key order: contiguous, as even as can be."""
        return (self.index - 1) * n // self.count, self.index * n // self.count

    @property
    def bounds(self) -> tuple[tuple[float, float, float, float], ...]:
        """`by: tile`: (west, south, east, north) in degrees of each of `tiles`."""
        return tuple(tile_math.bounds(t) for t in self.tiles)

    @classmethod
    def from_spec(cls, spec: Any, sources: dict[str, str]) -> ShardView | None:
        if not spec:
            return None
        files = tuple((str(name), Path(sources[name]) / member if member else Path(sources[name]))
                      for name, member in spec["files"])
        tiles = tuple((int(z), int(x), int(y)) for z, x, y in spec.get("tiles") or ())
        bbox = tuple(map(float, spec["bbox"])) if spec.get("bbox") else None
        return cls(int(spec["index"]), int(spec["count"]), files, spec.get("key"), tiles, bbox,
                   bool(spec.get("parts")))


@dataclass
class BuildContext:
    dataset_id: str
    version: str
    params: dict[str, Any]
    sources: dict[str, Path]
    outputs: dict[str, OutputSpec]
    source_date_epoch: int
    sample: bool = False
    shard: ShardView | None = None
    sample_bboxes: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def sample_bbox(self, name: str) -> tuple[float, ...] | None:
        """A sample build's `bbox` of the source's `sample.sources` entry (minx, miny, maxx, maxy) to filter with
        while reading, e.g. `pyogrio.read_dataframe(path, bbox=ctx.sample_bbox(name))`; else None."""
        self.source(name)
        return self.sample_bboxes.get(name)

    def shard_files(self) -> list[tuple[str, Path]]:
        """(source name, path) of every file this shard builds from, in sha256 order; for an
        `extract: true` source, its archive members. Only for a recipe with `shards:`."""
        if self.shard is None:
            raise ContextError("the recipe declares no `shards:`; read sources with ctx.source(name)")
        return list(self.shard.files)

    def shard_windows(self, transform: Any, width: int, height: int) -> list[Any]:
        """The rasterio windows of a north-up WGS 84 grid (`transform`, `width` x `height` cells)
        that this build computes: one per tile of a `by: tile` shard that holds cells (a cell is
        the tile's its centre lies in), in tile order; without `shards:`, the whole grid."""
        from rasterio.windows import Window

        if self.shard is None:
            return [Window(0, 0, width, height)]
        if not self.shard.tiles or self.shard.bbox is None:
            raise ContextError("ctx.shard_windows is for `shards: {by: tile}`; this shard holds files, not tiles")
        tile_math.check_inside(self.shard.bbox, transform, width, height)
        return [Window(c, r, w, h) for r, c, h, w in tile_math.windows(self.shard.tiles, transform, width, height)]

    def shard_rows(self, data: Any) -> Any:
        """`by: row_range`: this shard's rows of a DataFrame or Arrow table, taken after a stable
        sort by the shard key (the whole build, shard 1 of 1, keeps every row, sorted)."""
        if self.shard is None or not self.shard.key:
            raise ContextError("the recipe declares no `shards: {by: row_range, key: ...}`")
        key = self.shard.key
        start, stop = self.shard.rows(len(data))
        if hasattr(data, "sort_values"):  # pandas / geopandas; NaN and None last
            return data.sort_values(key, kind="stable", na_position="last").iloc[start:stop]
        import pyarrow.compute as pc

        return data.take(pc.sort_indices(data, [(key, "ascending")], null_placement="at_end")).slice(start, stop - start)

    def source(self, name: str) -> Path:
        """The verified local path of a declared source."""
        if name not in self.sources:
            raise ContextError(f"no source named {name!r}; the recipe declares {sorted(self.sources)}")
        return self.sources[name]

    def output(self, name: str, *formats: str) -> OutputSpec:
        if name not in self.outputs:
            raise ContextError(f"no output named {name!r}; the recipe declares {sorted(self.outputs)}")
        spec = self.outputs[name]
        if formats and spec.format not in formats:
            raise ContextError(f"output {name!r} is declared as {spec.format}, not {'/'.join(formats)}")
        return spec

    def output_path(self, name: str) -> Path:
        """Where a declared output must be written (for formats without a writer here)."""
        return self.output(name).path

    def write_geoparquet(self, name: str, data: Any, *, crs: Any = writers._UNSET,
                         geometry: str | None = None) -> int:
        """GeoParquet from a GeoDataFrame, or from a stream bigger than memory: an iterable of
        GeoDataFrames, or of Arrow batches / a RecordBatchReader (e.g. pyogrio's `open_arrow`)
        with WKB in `geometry` (or the column named) and `crs=` given. Returns the row count."""
        spec = self.output(name, "geoparquet")
        return writers.write_geoparquet(spec.path, data, spec.sort_by, crs=crs, geometry=geometry)

    def write_parquet(self, name: str, data: Any) -> int:
        """Parquet from a table or DataFrame, or a stream: a RecordBatchReader, a DuckDB
        relation, or an iterable of batches, tables or DataFrames. Returns the row count."""
        spec = self.output(name, "parquet")
        return writers.write_parquet(spec.path, data, spec.sort_by)

    def write_batches(self, name: str, batches: Any, **options: Any) -> int:
        """A stream of record batches into a declared Parquet, GeoParquet or CSV output, sorted
        with bounded memory (DuckDB's external sort); `options` as for write_geoparquet."""
        spec = self.output(name, "parquet", "geoparquet", "csv")
        if spec.format == "geoparquet":
            return self.write_geoparquet(name, batches, **options)
        if spec.format == "csv":
            return self.write_csv(name, batches)
        return self.write_parquet(name, batches)

    def write_csv(self, name: str, data: Any) -> int:
        """CSV from a table or DataFrame, or a stream as for write_parquet (sorted with bounded
        memory). Returns the row count."""
        spec = self.output(name, "csv")
        return writers.write_csv(spec.path, data, spec.sort_by)

    def write_flatgeobuf(self, name: str, gdf: Any) -> None:
        spec = self.output(name, "flatgeobuf")
        geo_writers.write_flatgeobuf(spec.path, gdf, spec.sort_by, layer=name)

    def write_gpkg(self, name: str, gdf: Any) -> None:
        """A GeoPackage of one layer called `name`, rows in `sort_by` order, R-tree indexed."""
        spec = self.output(name, "gpkg")
        geo_writers.write_gpkg(spec.path, gdf, spec.sort_by, layer=name)

    def write_pmtiles(self, name: str, gdf: Any, *, min_zoom: int = 0, max_zoom: int | None = None,
                      args: tuple[str, ...] = ()) -> None:
        """Vector tiles of one layer called `name` (tippecanoe; `max_zoom` None: chosen from the data).
        In a `shards: {by: tile}` build, the tiles of this shard's tiles (zooms >= the level), which
        the reduce merges (d4c.build.reduce_pmtiles); `max_zoom` must then be fixed."""
        spec = self.output(name, "pmtiles")
        shard = self.shard if self.shard is not None and self.shard.tiles else None
        if shard is not None and (max_zoom is None or max_zoom < shard.tiles[0][0] or "-zg" in args):
            raise ContextError(f"write_pmtiles({name!r}) in a `shards: {{by: tile}}` build needs a fixed max_zoom >= "
                               f"the shard level {shard.tiles[0][0]} (got {max_zoom!r}{', -zg' if '-zg' in args else ''}): "
                               "every shard must cut the same zooms")
        tiles = None if shard is None else reduce_pmtiles.TileSet.of(shard.tiles)
        geo_writers.write_pmtiles(spec.path, gdf, spec.sort_by, layer=name, min_zoom=min_zoom, max_zoom=max_zoom,
                                  args=tuple(args), tiles=tiles, finish=shard is not None and not shard.parts)

    def write_cog(self, name: str, data: Any, *, transform: Any, crs: Any,
                  nodata: float | None = None) -> None:
        """A Cloud-Optimized GeoTIFF from a (bands, rows, cols) array and its affine transform,
        or from parts of one grid: an iterable of (window, array) on the grid `transform`
        (`ctx.shard_windows` gives a `by: tile` shard's). A shard writes each array as a
        GeoTIFF part, which the reduce mosaics (d4c.build.reduce_cog); a `by: tile` shard's
        parts must lie in its tiles."""
        spec = self.output(name, "cog")
        shard = self.shard if self.shard is not None and self.shard.parts else None
        if shard is None and hasattr(data, "shape"):
            geo_writers.write_cog(spec.path, data, transform=transform, crs=crs, nodata=nodata)
            return
        pairs = [(None, data)] if hasattr(data, "shape") else data
        reduce_cog.write_parts(spec.path, pairs, transform=transform, crs=crs, nodata=nodata,
                               tiles=shard.tiles if shard is not None else (), whole=shard is None)
