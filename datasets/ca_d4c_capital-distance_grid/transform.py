"""Distance to the nearest provincial or territorial capital on a regular grid, as a COG.

A complete example to copy for a raster product: a NumPy array of (bands, rows, cols)
and its affine transform handed to the context's deterministic COG writer (GDAL's COG
driver, fixed compression, blocks and overviews).

Band 1: great-circle distance (haversine on a sphere) from each cell centre to the
nearest capital, rounded to whole kilometres; band 2: that capital's PRUID. Rounding
keeps the last bit of the machine's trigonometric functions out of the bytes; a tie
between two capitals goes to the lower PRUID (the rows are sorted by it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from affine import Affine

if TYPE_CHECKING:  # the context type, for editors and mypy only
    from d4c.build.context import BuildContext


def build(ctx: BuildContext) -> None:
    p = ctx.params
    capitals = pd.read_csv(ctx.source("provinces-territories"), encoding="utf-8",
                           usecols=["pruid", "capital_lat", "capital_lon"],
                           dtype={"pruid": "int16", "capital_lat": "float64", "capital_lon": "float64"})
    capitals = capitals.sort_values("pruid", kind="stable").reset_index(drop=True)
    west, north, cell = float(p["west"]), float(p["north"]), float(p["cell_deg"])
    cols, rows = int(p["columns"]), int(p["rows"])
    # cell centres from integer indices (no accumulated rounding)
    lon = np.radians(west + (np.arange(cols, dtype="float64") + 0.5) * cell)[np.newaxis, :]
    lat = np.radians(north - (np.arange(rows, dtype="float64") + 0.5) * cell)[:, np.newaxis]
    distances = np.empty((len(capitals), rows, cols), dtype="float64")
    for i, (clat, clon) in enumerate(zip(np.radians(capitals["capital_lat"]), np.radians(capitals["capital_lon"]))):
        h = np.sin((lat - clat) / 2) ** 2 + np.cos(lat) * np.cos(clat) * np.sin((lon - clon) / 2) ** 2
        distances[i] = 2 * float(p["earth_radius_km"]) * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
    nearest = np.argmin(distances, axis=0)  # the first (lowest PRUID) on a tie
    km = np.rint(np.take_along_axis(distances, nearest[np.newaxis], axis=0)[0])
    pruid = capitals["pruid"].to_numpy()[nearest]
    bands = np.stack([km.astype("uint16"), pruid.astype("uint16")])
    ctx.write_cog("distance", bands, crs="EPSG:4326", transform=Affine(cell, 0.0, west, 0.0, -cell, north))
