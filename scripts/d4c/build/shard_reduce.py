"""The reduce of a sharded build, and all the shards run here: verify, merge (`--check` is
d4c.build.shard_check).

The reduce verifies every shard manifest (hashes of its files, the partition, code,
environment, writer versions, schemas) and streams the shards' rows through the pinned
writer, whose total order makes the bytes equal to one unsharded build's. The partition
and one shard's build are d4c.build.shards. docs/scale.md.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pyarrow.parquet as pq

from d4c.build import manifest as mf
from d4c.build import outputs, pipeline, provenance, reduce_cog, reduce_pmtiles, sorting, writers
from d4c.build.runners import RunResult
from d4c.build.shards import (
    SHARD_MANIFEST,
    WRITER_PACKAGES,
    Item,
    assign,
    build_shard,
    partitioned,
    read_shard_manifest,
    shard_files,
    spec_of,
    tile_runs,
)
from d4c.digest import sha256_file
from d4c.errors import D4CError
from d4c.recipe import Output, Recipe

log = logging.getLogger("d4c.build")


class ShardFile(NamedTuple):
    """One file a shard made for an output (a shard may make several: a COG's parts)."""

    shard: int  # the shard's index, 1-based
    path: Path
    tiles: tuple[tuple[int, int, int], ...] = ()  # `by: tile`: the shard's tiles (z, x, y), else ()


class Merge(Protocol):
    """A reducer: every shard's file(s) of one output, in shard order, into the artifact at `dest`."""

    def __call__(self, output: Output, shard_files: list[ShardFile], dest: Path) -> None: ...


class Reducer(NamedTuple):
    method: str  # the `reduce.method` that names it (`by_format` picks each output's own)
    merge: Merge


# -- the reduce ----------------------------------------------------------------------------

def verify_shard(recipe: Recipe, folder: Path) -> tuple[dict[str, Any], str]:
    """A shard manifest of this recipe whose files hash as listed; returns (doc, its sha256)."""
    path = folder / SHARD_MANIFEST
    hashed: list[str] = []
    doc = read_shard_manifest(path, hashed)
    try:
        ds, shard = doc["dataset"], doc["shard"]
        if (ds["id"], ds["version"], ds["recipe_sha256"]) != (recipe.id, recipe.version, recipe.sha256):
            raise D4CError(f"{path}: built from {ds['id']} v{ds['version']} recipe {ds['recipe_sha256'][:12]}, "
                           f"not this recipe ({recipe.sha256[:12]})", hint="rebuild the shard from this recipe")
        names = [(o["name"], o["file"]) for o in doc["outputs"]]
        files = [n for _, n in names]
        if names != ([(o.name, n) for o, n in shard_files(recipe, files)] if doc["inputs"] else []):
            raise D4CError(f"{path}: lists the outputs {names}, not this recipe's artifacts for its inputs",
                           hint="rebuild the shard from this recipe")
        for o in doc["outputs"]:
            f = folder / o["file"]
            if not f.is_file() or f.is_symlink() or sha256_file(f) != o["sha256"]:
                raise D4CError(f"{f}: missing or not the bytes shard {shard['index']}/{shard['count']} lists",
                               hint="rebuild that shard")
    except (KeyError, TypeError) as exc:
        raise D4CError(f"{path}: shard manifest lacks {exc}", hint="rebuild the shard") from None
    return doc, hashed[0]


def check_set(recipe: Recipe, docs: list[dict[str, Any]]) -> None:
    """Exactly shards 1..M of one partition, with the same arguments and tools."""
    count = docs[0]["shard"]["count"]
    indices = sorted(d["shard"]["index"] for d in docs)
    if indices != list(range(1, count + 1)) or any(d["shard"]["count"] != count for d in docs):
        raise D4CError(f"{recipe.id}: the reduce needs shards 1..{count} once each, got {indices}",
                       hint="pass one folder per shard of the same plan")
    for key in ("arguments", "code"):
        if any(d[key] != docs[0][key] for d in docs):
            raise D4CError(f"{recipe.id}: the shards differ in their {key}", hint="rebuild them from one commit")
    envs = [d["environment"] for d in docs if d["environment"] is not None]
    if any(e != envs[0] for e in envs):
        raise D4CError(f"{recipe.id}: the shards ran in different environments (tool versions or runner)",
                       hint="build every shard in the same pinned environment")
    by = spec_of(recipe).by
    found = sorted({Item(i["sha256"], i["source"], i["member"]) for d in docs for i in d["inputs"]})
    plain = {(s.sha256, s.name) for s in partitioned(recipe) if not s.extract}
    got = {(i.sha256, i.source) for i in found if i.member is None}
    cut = assign(found, count, by)
    if by == "tile":
        runs = _check_tiles(recipe, docs)
        cut = [c if r else [] for c, r in zip(cut, runs)]
    if got != plain or any([Item(**i) for i in d["inputs"]] != cut[d["shard"]["index"] - 1] for d in docs):
        raise D4CError(f"{recipe.id}: the shards' inputs are not the partition of the sources",
                       hint="rebuild the shards with this recipe's `shards:` spec")


def _check_tiles(recipe: Recipe, docs: list[dict[str, Any]]) -> list[list[Any]]:
    """`by: tile`: every shard's tiles are exactly its run of the partition; returns the runs."""
    runs = tile_runs(recipe, docs[0]["shard"]["count"])
    for d in docs:
        index = d["shard"]["index"]
        if [tuple(t) for t in d["shard"].get("tiles") or ()] != runs[index - 1]:
            raise D4CError(f"{recipe.id}: shard {index}'s tiles are not its run of the partition "
                           f"(level {spec_of(recipe).level} over spatial.bbox)",
                           hint="rebuild the shards with this recipe's `shards:` spec and bbox")
    return runs


def _host_writers(env: dict[str, Any]) -> None:
    """The reduce writes with this process's libraries: they must be the shards' versions."""
    for name in WRITER_PACKAGES:
        want = env["packages"].get(name)
        have = metadata.version(name)
        if want is not None and want != have:
            raise D4CError(f"the reduce runs {name} {have}, the shards ran {want}",
                           hint="run the reduce in the shards' environment (the same requirements.lock)")


def _key_range(path: Path, key: str) -> tuple[Any, Any] | None:
    """(min, max) of `key` in a Parquet file, from its row-group statistics (nulls left out)."""
    pf = pq.ParquetFile(path)
    column = pf.schema_arrow.get_field_index(key)
    stats = [pf.metadata.row_group(g).column(column).statistics for g in range(pf.num_row_groups)]
    known = [s for s in stats if s is not None and s.has_min_max]
    return (min(s.min for s in known), max(s.max for s in known)) if known else None


def _check_key_order(recipe: Recipe, built: list[tuple[dict[str, Any], Path]]) -> None:
    """A `row_range` shard holds a run of the rows sorted by the key: in shard order, each
    shard's smallest key is at least the previous shard's largest (checked on the outputs
    whose `sort_by` starts with the key)."""
    key = spec_of(recipe).key or ""
    for o in (o for o in recipe.outputs if o.sort_by[:1] == (key,)):
        last: Any = None
        for doc, folder in built:
            span = _key_range(folder / recipe.artifact_name(o), key)
            if span is not None and last is not None and span[0] < last:
                raise D4CError(f"{recipe.id}: shard {doc['shard']['index']}'s {o.name} starts at {key} = {span[0]!r}, below "
                               f"the previous shard's largest {last!r}",
                               hint="keep each shard's rows with ctx.shard_rows(table)")
            last = span[1] if span is not None else last


def _same_schema(output: Any, files: list[ShardFile]) -> None:
    """Every shard's file has the first one's columns and types (as the writer writes them)."""
    first = sorting.plain_schema(pq.read_schema(files[0].path))
    for index, f, _ in files[1:]:
        schema = sorting.plain_schema(pq.read_schema(f))
        if not schema.equals(first):
            odd = [f"{a.name}: {a.type} vs {b.type}" for a, b in zip(first, schema) if a != b] or \
                [f"columns {first.names} vs {schema.names}"]
            raise D4CError(f"shard {index}'s {output.name} differs in schema from shard {files[0].shard}'s "
                           f"({'; '.join(odd)[:300]})", hint="give every column an explicit type in the transform, "
                           "so each shard writes the same schema")


def _merge(output: Output, shard_files: list[ShardFile], dest: Path) -> None:
    """Every shard's rows through the pinned writer, a row group at a time (bounded memory)."""
    _same_schema(output, shard_files)
    files = [f.path for f in shard_files]
    def batches() -> Any:
        for f in files:
            yield from pq.ParquetFile(f).iter_batches(batch_size=sorting.ROW_GROUP_ROWS, use_threads=False)

    if output.format == "parquet":
        writers.write_parquet(dest, batches(), output.sort_by)
        return
    geo = json.loads(pq.ParquetFile(files[0]).metadata.metadata[b"geo"])
    column = geo["primary_column"]
    cover = geo["columns"][column].get("covering", {}).get("bbox", {}).get("xmin", [None])[0]
    crs = geo["columns"][column].get("crs")
    import pyproj

    def plain() -> Any:  # the writer adds the bbox covering again, from the geometry
        for b in batches():
            yield b.drop_columns([cover]) if cover else b

    writers.write_geoparquet(dest, plain(), output.sort_by, geometry=column,
                             crs=None if crs is None else pyproj.CRS.from_json_dict(crs))


# The reduce of each output format a sharded recipe may declare (shards.spec_of refuses others).
REDUCERS: dict[str, Reducer] = {
    "parquet": Reducer("concat", _merge),
    "geoparquet": Reducer("concat", _merge),
    "pmtiles": Reducer("tile_merge", reduce_pmtiles.merge),
    "cog": Reducer("mosaic", reduce_cog.mosaic),
}


def reduce(recipe: Recipe, root: Path, folders: list[Path], out: Path,
           opts: pipeline.BuildOptions) -> dict[str, Any]:
    """Verify every shard, merge their outputs into the artifacts, write the final manifest."""
    spec_of(recipe)
    shards = sorted((verify_shard(recipe, f.absolute()) + (f.absolute(),) for f in folders),
                    key=lambda t: t[0]["shard"]["index"])
    docs = [d for d, _, _ in shards]
    check_set(recipe, docs)
    built = [(d, f) for d, _, f in shards if d["environment"] is not None]
    if not built:
        raise D4CError(f"{recipe.id}: no shard holds any file", hint="check `shards:` and the sources")
    env = built[0][0]["environment"]
    _host_writers(env)
    if spec_of(recipe).by == "row_range":
        _check_key_order(recipe, built)
    out = out.absolute()
    pipeline.check_out_dir(out, recipe.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        for o in recipe.outputs:
            name = recipe.artifact_name(o)
            log.info("reduce: %s from %d shards (%s)", name, len(built), REDUCERS[o.format].method)
            files = [ShardFile(d["shard"]["index"], f / e["file"], tuple(map(tuple, d["shard"].get("tiles", ()))))
                     for d, f in built for e in d["outputs"] if e["name"] == o.name]
            REDUCERS[o.format].merge(o, files, stage / name)
        outputs.accept(stage, [recipe.artifact_name(o) for o in recipe.outputs], where=recipe.folder.name)
        run = RunResult(runner=env["runner"], sandbox=env["sandbox"], network_isolation=env["network_isolation"],
                        python=env["python"], packages=env["packages"], image_id=env["image_id"],
                        files=built[0][0]["dataset"]["files"], tools=env.get("tools", {}))
        args = docs[0]["arguments"]
        manifest = mf.make(recipe, root, stage, run, args["params"], args["source_date_epoch"], args["sample"],
                           docs[0]["code"])
        manifest["shards"] = [{"index": d["shard"]["index"], "sha256": h} for d, h, _ in shards]
        mf.validate(manifest)
        mf.write(stage / pipeline.MANIFEST, manifest)
        mf.write(stage / pipeline.PROVENANCE, provenance.statement(manifest))
        pipeline.publish(stage, out)
        return manifest
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# -- all shards here, then the reduce ------------------------------------------------------

def shards_dir(out: Path) -> Path:
    """Where a local sharded build keeps its shards: `<out>.shards/<N>/` beside the output."""
    return out.with_name(f"{out.name}.shards")


def build_local(recipe: Recipe, root: Path, out: Path, opts: pipeline.BuildOptions,
                jobs: int | None = None) -> dict[str, Any]:
    """Every shard in parallel worker processes (one sandbox each), then the reduce into `out`."""
    count = spec_of(recipe).max
    out = out.absolute()
    pipeline.check_out_dir(out, recipe.id)
    opts = replace(opts, code=opts.code if opts.code is not None else mf.code_state(root, recipe))
    pipeline.resolve_sources(recipe, opts.sources, opts.source_copies)  # fetched once, before the shards
    folder = shards_dir(out)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    dirs = [folder / str(i) for i in range(1, count + 1)]
    workers = max(1, min(count, jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each thread waits on its own sandbox process
        list(pool.map(lambda i: build_shard(recipe, root, dirs[i - 1], opts, i, count), range(1, count + 1)))
    return reduce(recipe, root, dirs, out, opts)


# -- --check -------------------------------------------------------------------------------

def check_subset(recipe: Recipe, candidates: list[int]) -> tuple[int, list[int]]:
    """(seed, shards to rebuild) among `candidates` (the shards holding files): seeded by the
    recipe's bytes, so a rerun checks the same ones and a new recipe others; about one in
    eight, at least one."""
    seed = int(recipe.sha256[:16], 16)
    return seed, sorted(random.Random(seed).sample(candidates, max(1, -(-len(candidates) // 8))))
