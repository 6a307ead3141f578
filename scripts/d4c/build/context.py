"""The object a transform receives: verified sources, params, and deterministic writers.

```python
def build(ctx: BuildContext) -> None:
    df = pd.read_csv(ctx.source("population"))
    ctx.write_parquet("table", df)
```
Only declared names are accepted, so a typo fails with the list of valid names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d4c.build import geo_writers, writers


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


@dataclass
class BuildContext:
    dataset_id: str
    version: str
    params: dict[str, Any]
    sources: dict[str, Path]
    outputs: dict[str, OutputSpec]
    source_date_epoch: int
    sample: bool = False

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

    def write_geoparquet(self, name: str, gdf: Any) -> None:
        spec = self.output(name, "geoparquet")
        writers.write_geoparquet(spec.path, gdf, spec.sort_by)

    def write_parquet(self, name: str, data: Any) -> None:
        spec = self.output(name, "parquet")
        writers.write_parquet(spec.path, data, spec.sort_by)

    def write_csv(self, name: str, data: Any) -> None:
        spec = self.output(name, "csv")
        writers.write_csv(spec.path, data, spec.sort_by)

    def write_flatgeobuf(self, name: str, gdf: Any) -> None:
        spec = self.output(name, "flatgeobuf")
        geo_writers.write_flatgeobuf(spec.path, gdf, spec.sort_by, layer=name)

    def write_pmtiles(self, name: str, gdf: Any, *, min_zoom: int = 0, max_zoom: int | None = None,
                      args: tuple[str, ...] = ()) -> None:
        """Vector tiles of one layer called `name` (tippecanoe; `max_zoom` None: chosen from the data)."""
        spec = self.output(name, "pmtiles")
        geo_writers.write_pmtiles(spec.path, gdf, spec.sort_by, layer=name, min_zoom=min_zoom,
                                  max_zoom=max_zoom, args=tuple(args))

    def write_cog(self, name: str, data: Any, *, transform: Any, crs: Any,
                  nodata: float | None = None) -> None:
        """A Cloud-Optimized GeoTIFF from a (bands, rows, cols) array and its affine transform."""
        spec = self.output(name, "cog")
        geo_writers.write_cog(spec.path, data, transform=transform, crs=crs, nodata=nodata)
