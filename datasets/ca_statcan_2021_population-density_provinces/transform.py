"""Population density by province and territory: join two tables, derive a column.

A complete example to copy: two declared sources joined on their key, a derived
value rounded by a recipe parameter, and the same table written twice (Parquet
and CSV) through the context's deterministic writers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # the context type, for editors and mypy only
    from d4c.build.context import BuildContext


def build(ctx: BuildContext) -> None:
    population = pd.read_csv(ctx.source("population"), dtype={"pruid": "int16", "population_2021": "int64"})
    land = pd.read_csv(ctx.source("land-area"), dtype={"pruid": "int16", "land_area_km2": "float64"})
    # validate="one_to_one": a duplicated or missing key is an error, not a silent row change.
    table = population.merge(land, on="pruid", how="inner", validate="one_to_one")
    if len(table) != len(population) or len(table) != len(land):
        raise ValueError(f"pruid values differ between the two sources ({len(population)} vs {len(land)} rows)")
    density = table["population_2021"] / table["land_area_km2"]
    table["density_per_km2"] = density.round(int(ctx.params["density_decimals"]))
    ctx.write_parquet("table", table)
    ctx.write_csv("table-csv", table)
