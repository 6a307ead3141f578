"""The CI jobs of a plan: which rows build whole, which build one shard, which reduce.

`d4c plan` gives each dataset one row; a recipe with `shards:` also gives one row per shard
and one reduce row. Rows carry the recipe's `runs_on` runner labels, checked here against
the schema's own pattern, because they go into the workflows' `runs-on` (docs/scale.md).
"""
from __future__ import annotations

import re
from typing import Any

from d4c import schemas
from d4c.errors import D4CError

MATRIX_LIMIT = 256  # jobs one matrix may generate in a workflow run (GitHub Actions)
DEFAULT_RUNNER = ("ubuntu-24.04",)


def _runs_on_schema() -> dict[str, Any]:
    return dict(schemas.load("recipe")["properties"]["runs_on"])


def runs_on(recipe: dict[str, Any], where: str) -> list[str]:
    """The recipe's runner labels (default: a hosted Ubuntu runner), or one clear error."""
    labels = recipe.get("runs_on")
    if labels is None:
        return list(DEFAULT_RUNNER)
    spec = _runs_on_schema()
    label = re.compile(spec["items"]["pattern"])
    ok = (isinstance(labels, list) and spec["minItems"] <= len(labels) <= spec["maxItems"]
          and len(set(map(str, labels))) == len(labels)
          and all(isinstance(x, str) and label.fullmatch(x) for x in labels))
    if not ok:
        raise D4CError(f"{where}: `runs_on` must be a list of 1 to {spec['maxItems']} distinct runner labels "
                       f"matching {spec['items']['pattern']}, got {str(labels)[:80]!r}",
                       hint="e.g. runs_on: [self-hosted, linux, x64, big-disk]; run `d4c validate`")
    return labels


def shard_count(recipe: dict[str, Any]) -> int:
    """`shards.max` of a recipe (0: not sharded, or a spec `d4c validate` rejects, whose build says why)."""
    spec = recipe.get("shards")
    count = spec.get("max") if isinstance(spec, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MATRIX_LIMIT:
        return 0
    return count


def shard_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per shard: `shard` is the argument of `--shard`, `shard_index` names its artifact;
    each shard caches the sources it fetches under a key of its own."""
    count = int(row["shards"])
    return [{**row, "shard": f"{i}/{count}", "shard_index": i, "cache_key": f"{row['cache_key']}-shard-{i}-of-{count}"}
            for i in range(1, count + 1)]


def jobs(rows: list[dict[str, Any]], what: str) -> dict[str, list[dict[str, Any]]]:
    """{"build": whole builds, "shard": one row per shard, "reduce": one row per sharded dataset}.

    Each list is one matrix job: past 256 rows the plan refuses (chained runs are not built)."""
    out = {"build": [r for r in rows if not r["shards"]],
           "shard": [s for r in rows if r["shards"] for s in shard_rows(r)],
           "reduce": [r for r in rows if r["shards"]]}
    for job, listed in out.items():
        if len(listed) > MATRIX_LIMIT:
            per = ", ".join(f"{r['dataset']}: {r['shards']}" for r in out["reduce"])[:200]
            raise D4CError(f"the plan's {what} needs {len(listed)} `{job}` jobs, and one workflow run's matrix holds "
                           f"at most {MATRIX_LIMIT}" + (f" (shards per dataset: {per})" if job == "shard" else ""),
                           hint="split the change across pushes (fewer datasets, or lower `shards.max`), "
                                "or run the plan under Argo (`d4c plan --format argo`)")
    return out
