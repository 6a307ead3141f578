"""Provinces and territories with their capitals as points.

A complete example to copy: read a declared source, build a GeoDataFrame in the
recipe's CRS, and hand it to the context's deterministic GeoParquet writer (rows
are sorted by the recipe's `sort_by`, the `geo` metadata is written for you).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import geopandas as gpd
import pandas as pd

if TYPE_CHECKING:  # the context type, for editors and mypy only
    from d4c.build.context import BuildContext

# Explicit column types: never let a reader guess (a code like "01" would lose its zero).
DTYPES = {
    "pruid": "int16",
    "code": "string",
    "name_en": "string",
    "name_fr": "string",
    "kind": "string",
    "capital": "string",
    "capital_lat": "float64",
    "capital_lon": "float64",
}


def build(ctx: BuildContext) -> None:
    table = pd.read_csv(ctx.source("provinces-territories"), dtype=DTYPES, encoding="utf-8")
    points = gpd.points_from_xy(table["capital_lon"], table["capital_lat"])
    capitals = gpd.GeoDataFrame(
        table.drop(columns=["capital_lat", "capital_lon"]),
        geometry=points,
        crs=ctx.params["crs"],
    )
    ctx.write_geoparquet("capitals", capitals)
