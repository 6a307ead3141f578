"""Capitals as points, in three formats: GeoParquet, FlatGeobuf and PMTiles.

A complete example to copy for a vector product: one GeoDataFrame handed to three of
the context's deterministic writers. Each writer sorts the rows by the output's
`sort_by`; FlatGeobuf gets a packed spatial index, PMTiles one layer named after the
output (tippecanoe, zoom levels 0 to the recipe's `max_zoom`, no point dropped).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import geopandas as gpd
import pandas as pd

if TYPE_CHECKING:  # the context type, for editors and mypy only
    from d4c.build.context import BuildContext

# Explicit column types: never let a reader guess.
DTYPES = {
    "capital": "string",
    "role": "string",
    "pruid": "int16",
    "code": "string",
    "province_en": "string",
    "province_fr": "string",
    "lat": "float64",
    "lon": "float64",
}


def build(ctx: BuildContext) -> None:
    table = pd.read_csv(ctx.source("capitals"), dtype=DTYPES, encoding="utf-8")
    capitals = gpd.GeoDataFrame(
        table.drop(columns=["lat", "lon"]),
        geometry=gpd.points_from_xy(table["lon"], table["lat"]),
        crs=ctx.params["crs"],
    )
    ctx.write_geoparquet("capitals", capitals)
    ctx.write_flatgeobuf("capitals-fgb", capitals)
    # --drop-rate=1: every capital in every tile that covers it, at every zoom (tippecanoe
    # would otherwise thin points out below the maximum zoom)
    ctx.write_pmtiles("capitals-tiles", capitals, max_zoom=int(ctx.params["max_zoom"]), args=("--drop-rate=1",))
