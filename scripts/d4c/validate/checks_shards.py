"""D4C608: a `shards:` spec that every build of the recipe would refuse, reported at review.

The build checks the spec when it starts (d4c.build.shards.spec_of, tile_runs): a reducer for
every output, PMTiles only with `by: tile`, `spatial.bbox` and a tile count within the limit.
Without this lint such a recipe passes `d4c validate` and `d4c plan` fans it out into shard
jobs that all fail the same way; the same functions run here, so the two cannot disagree.
"""
from __future__ import annotations

from d4c import recipe
from d4c.errors import D4CError
from d4c.validate.context import Context


def check_shards(ctx: Context) -> None:
    if not isinstance(ctx.data.get("shards"), dict) or any(f.lint.startswith("D4C2") for f in ctx.found):
        return  # no shards, or a shape the schema already reports (the spec cannot be read)
    spec = ctx.data["shards"]
    for key, by in (("level", "tile"), ("key", "row_range")):  # ignored by the other partitions
        if key in spec and spec.get("by") != by:
            ctx.add("D4C608", ("shards", key), f"`shards.{key}` is for `by: {by}` only; this recipe "
                    f"partitions by {spec.get('by')} and would ignore it (remove it, or use `by: {by}`)", key=True)
    from d4c.build import shards  # imported here: it loads the build's libraries (pyarrow)

    try:
        rec = recipe.load(ctx.recipe)
    except D4CError:
        return  # unreadable as a recipe: the other lints say why
    try:
        spec = shards.spec_of(rec)
        if spec.by == "tile":
            shards.tile_runs(rec, spec.max)
    except D4CError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        ctx.add("D4C608", ("shards",), f"{exc.message.removeprefix(rec.id + ': ')}{hint}", key=True)
