"""The CI jobs of a plan: which rows build whole, which build one shard, which reduce.

`d4c plan` gives each dataset one row; a recipe with `shards:` also gives one row per shard
and one reduce row. Rows carry the recipe's `runs_on` runner labels, checked here against
the schema's own pattern, because they go into the workflows' `runs-on` (docs/scale.md).
"""
from __future__ import annotations

import json
import re
from typing import Any

from d4c import schemas, semver
from d4c.errors import D4CError

IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}\Z")  # a container image id (the config digest)
DATASET_ID = re.compile(r"^[a-z0-9_-]+\Z")  # \Z: `$` lets a trailing newline through
MATRIX_LIMIT = 256  # jobs one matrix may generate in a workflow run (GitHub Actions); also shards.max's ceiling
CHUNK_ROWS = MATRIX_LIMIT  # rows per matrix in one run of a chain
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


def _chunked(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with `chunk`: rows 1..256 are chunk 1, 257..512 chunk 2, ... (one workflow run each)."""
    return [{**r, "chunk": i // CHUNK_ROWS + 1} for i, r in enumerate(listed)]


def jobs(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{"build": whole builds, "image", "shard": one row per shard, "reduce": one row per sharded dataset}.

    Every row says its `chunk`: one workflow run holds at most 256 rows per matrix, so the
    rows past that run in chained runs (chunk 2, 3, ...; docs/scale.md). The shards are cut
    in plan order, so a dataset's shards (at most 256) span at most two chunks: its image is
    built in the chunk of its first shard (`image_chunk`) and its reduce runs in the chunk of
    its last one, which then also takes the shards and image of the run before."""
    named = next((r["dataset"] for r in rows if not DATASET_ID.match(r["dataset"])), None)
    if named is not None:  # the plan takes ids from folder names; they reach names, paths and globs
        raise D4CError(f"datasets/{named[:60]!r}: a dataset folder is named with a-z, 0-9, _ and - only (it "
                       "becomes artifact names, download patterns and paths in the workflows)",
                       hint="name the folder as the recipe's `id`; run `d4c validate`")
    odd = next((r for r in rows if not semver.is_valid(r["version"])), None)
    if odd is not None:  # the release job downloads the build to .d4c/build/<id>/v<version>
        raise D4CError(f"datasets/{odd['dataset']}/recipe.yaml: version {odd['version'][:60]!r} is not SemVer "
                       "(it becomes the release job's download path .d4c/build/<id>/v<version>)",
                       hint="use MAJOR.MINOR.PATCH, e.g. 1.2.0; run `d4c validate`")
    sharded = [r for r in rows if r["shards"]]
    shard = _chunked([s for r in sharded for s in shard_rows(r)])
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for s in shard:
        first.setdefault(s["dataset"], s["chunk"])
        last[s["dataset"]] = s["chunk"]
    return {"build": _chunked([r for r in rows if not r["shards"]]),
            "image": [{**r, "chunk": first[r["dataset"]]} for r in sharded],
            "shard": [{**s, "image_chunk": first[s["dataset"]]} for s in shard],
            "reduce": [{**r, "chunk": last[r["dataset"]], "image_chunk": first[r["dataset"]]} for r in sharded]}


def chunks(jobs_: dict[str, list[dict[str, Any]]]) -> int:
    """How many chained runs the jobs take (1 when there is nothing to run: one run plans it)."""
    return max((r["chunk"] for listed in jobs_.values() for r in listed), default=1)


def in_chunk(jobs_: dict[str, list[dict[str, Any]]], chunk: int) -> dict[str, list[dict[str, Any]]]:
    """The rows one run of the chain takes."""
    return {job: [r for r in listed if r["chunk"] == chunk] for job, listed in jobs_.items()}


def built_in(jobs_: dict[str, list[dict[str, Any]]], chunk: int) -> set[str]:
    """The datasets whose artifacts a run makes (a whole build, or the reduce): it releases those."""
    return {r["dataset"] for job in ("build", "reduce") for r in jobs_.get(job, []) if r["chunk"] == chunk}


def image_ids(text: str, where: str) -> dict[str, str]:
    """A map dataset id -> image id (the image job's `ids` output, carried to the next run of a
    chain), checked: it reaches `--image-id` of shard and reduce jobs. Empty text is {}."""
    try:
        ids = json.loads(text) if text.strip() else {}
    except ValueError:
        ids = None
    if not isinstance(ids, dict) or not all(isinstance(k, str) and DATASET_ID.match(k) and isinstance(v, str)
                                            and IMAGE_ID.match(v) for k, v in ids.items()):
        raise D4CError(f"{where}: {text[:80]!r} is not a JSON map of dataset id -> sha256:<64 hex>",
                       hint="pass the image job's `ids` output as it is")
    return dict(sorted(ids.items()))
