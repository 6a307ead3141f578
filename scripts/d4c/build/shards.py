"""Sharded builds: the partition (`shards:`), one shard's build and its manifest; the reduce
(`reduce:`) and a local run of every shard are d4c.build.shard_reduce.

The partition is a function of the sources' sha256s and the shard spec only: every file
to partition (a source, or each member of an `extract: true` archive) is sorted by sha256
and the sorted list is cut into `max` contiguous runs, so any machine, in any order, gives
each shard the same files. A shard builds in the same sandbox as a whole build and writes
`shard.json` (inputs, outputs, tool versions, arguments); the reduce verifies every shard
manifest and streams the shards' rows through the pinned writer, whose total order makes
the bytes equal to one unsharded build's. docs/scale.md.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from d4c import canonical, schemas
from d4c.atomic import atomic_write
from d4c.build import limits as lim
from d4c.build import manifest as mf
from d4c.build import outputs, pipeline, reduce_cog
from d4c.build import tiles as tile_math
from d4c.build.runners import Job, RunResult, get_runner
from d4c.digest import sha256_file
from d4c.errors import D4CError, UsageError
from d4c.recipe import Output, Recipe

log = logging.getLogger("d4c.build")
SHARD_MANIFEST = "shard.json"
SHARD_MANIFEST_VERSION = 1
TABLES = {"parquet", "geoparquet"}  # outputs whose shard manifest entry counts rows
PARTED = {"cog"}  # outputs a shard writes as numbered parts (d4c.build.reduce_cog)
# The libraries the reduce writes with: they must be the versions the shards ran with.
WRITER_PACKAGES = ("pyarrow", "duckdb", "shapely", "pyproj", "rasterio", "pmtiles", "mapbox-vector-tile",
                   "protobuf")


@dataclass(frozen=True, order=True)
class Item:
    """One file to partition: a source, or a member (relative path) of an extracted source."""

    sha256: str
    source: str
    member: str | None = None

    def doc(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "source": self.source, "member": self.member}


def parse_shard(text: str) -> tuple[int, int]:
    """`N/M` (1-based) -> (N, M), or a usage error."""
    head, _, tail = text.partition("/")
    if not (head.isdigit() and tail.isdigit()) or not 1 <= int(head) <= int(tail):
        raise UsageError(f"--shard {text!r}: expected N/M with 1 <= N <= M, e.g. 2/4")
    return int(head), int(tail)


def spec_of(recipe: Recipe) -> Any:
    """The recipe's shard spec, checked against what this slice can reduce."""
    spec = recipe.shards
    if spec is None:
        raise D4CError(f"{recipe.id}: the recipe declares no `shards:`", hint="build it without --shard/--reduce")
    _check_reduce(recipe, spec.reduce)
    tiled = [o.name for o in recipe.outputs if o.format == "pmtiles"]
    if tiled and spec.by != "tile":
        raise D4CError(f"{recipe.id}: PMTiles outputs ({', '.join(tiled)}) need `shards: {{by: tile}}`, not by: {spec.by}",
                       where=str(recipe.path), hint="partition by tile (`shards: {by: tile, level: Z, max: M}`): "
                       "the reduce merges each shard's tiles")
    if spec.by == "row_range" and not spec.key:
        raise D4CError(f"{recipe.id}: `shards: {{by: row_range}}` needs `key:`", where=str(recipe.path),
                       hint="name the column whose sorted order is cut into ranges")
    if spec.by == "tile":
        _bbox(recipe)
        if spec.level is None or not 0 <= spec.level <= 24:
            raise D4CError(f"{recipe.id}: `shards: {{by: tile}}` needs `level:` from 0 to 24, not {spec.level}",
                           where=str(recipe.path), hint="the zoom level whose tiles are cut into runs, e.g. 4")
    names = {s.name for s in recipe.sources}
    unknown = sorted(set(spec.sources or ()) - names)
    if unknown:
        raise D4CError(f"{recipe.id}: `shards.sources` names no source {unknown}", where=str(recipe.path),
                       hint=f"use names from `sources:` ({', '.join(sorted(names))})")
    return spec


def _check_reduce(recipe: Recipe, method: str) -> None:
    """Every output has a reducer (shard_reduce.REDUCERS), of `method` unless it is `by_format`."""
    from d4c.build.shard_reduce import REDUCERS  # imported here: shard_reduce imports this module

    methods = {fmt: r.method for fmt, r in REDUCERS.items()}
    odd = [f"{o.name} ({o.format})" for o in recipe.outputs
           if o.format not in methods or method not in ("by_format", methods[o.format])]
    if odd:
        known = ", ".join(f"{fmt}: {m}" for fmt, m in sorted(methods.items()))
        raise D4CError(f"{recipe.id}: `reduce: {{method: {method}}}` cannot merge the output(s) {', '.join(odd)}",
                       where=str(recipe.path), hint=f"the reducers are {known}; `method: by_format` takes "
                       "each output's own, or drop `shards:`")


def _bbox(recipe: Recipe) -> list[float]:
    bbox = (recipe.data.get("spatial") or {}).get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise D4CError(f"{recipe.id}: `shards: {{by: tile}}` needs `spatial.bbox`", where=str(recipe.path),
                       hint="declare [west, south, east, north] in degrees: its tiles are what is partitioned")
    return [float(v) for v in bbox]


def tile_runs(recipe: Recipe, count: int) -> list[list[tile_math.Tile]]:
    """`by: tile`: the tiles at `level` that meet `spatial.bbox`, in tile-id order, cut into
    `count` contiguous runs, as even as whole tiles allow (a function of the spec and bbox only)."""
    spec = spec_of(recipe)
    try:
        return tile_math.cut(tile_math.covering(_bbox(recipe), int(spec.level)), count)
    except ValueError as exc:
        raise D4CError(f"{recipe.id}: {exc}", where=str(recipe.path),
                       hint="lower `shards.level`, or fix `spatial.bbox`") from None


def partitioned(recipe: Recipe) -> list[Any]:
    spec = spec_of(recipe)
    return [s for s in recipe.sources if spec.sources is None or s.name in spec.sources]


def needed_sources(recipe: Recipe, index: int, count: int) -> set[str]:
    """The sources shard `index` of `count` must fetch: the unpartitioned ones, every partitioned
    archive (its members are known only once unpacked) and its own plain files."""
    parts = partitioned(recipe)
    plain = [Item(s.sha256, s.name) for s in parts if not s.extract]
    if spec_of(recipe).by in ("row_range", "tile"):  # every shard reads every file, keeps its rows or tiles
        mine = {s.name for s in parts}
    elif any(s.extract for s in parts):
        mine = {s.name for s in parts}  # the cut depends on the members: every partitioned file
    else:
        mine = {i.source for i in assign(plain, count)[index - 1]}
    return {s.name for s in recipe.sources if s not in parts} | mine


def items(recipe: Recipe, sources: dict[str, Path]) -> list[Item]:
    """Every file to partition, sorted by sha256 (then source and member, for equal bytes)."""
    found: list[Item] = []
    for src in partitioned(recipe):
        if not src.extract:
            found.append(Item(src.sha256, src.name))
            continue
        root = sources[src.name]
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            found.append(Item(sha256_file(path), src.name, path.relative_to(root).as_posix()))
    return sorted(found)


def assign(found: list[Item], count: int, by: str = "source_file") -> list[list[Item]]:
    """Cut the sorted files into `count` contiguous runs, as even as whole files allow
    (`row_range`, `tile`: every shard gets every file, and its range of the rows or tiles)."""
    ordered = sorted(found)
    n = len(ordered)
    if by in ("row_range", "tile"):
        return [ordered] * count
    return [ordered[k * n // count:(k + 1) * n // count] for k in range(count)]


def view(recipe: Recipe, index: int, count: int, mine: list[Item], tiles: list[tile_math.Tile] | None,
         parts: bool) -> dict[str, Any]:
    """What the worker hands the transform as `ctx.shard`: `key` for `row_range`, the tiles and
    bbox for `tile`; `parts`: a shard of a build, whose COG outputs are parts for the reduce."""
    doc = {"index": index, "count": count, "files": [[i.source, i.member] for i in mine], "key": spec_of(recipe).key}
    if tiles is not None:
        doc.update(tiles=[list(t) for t in tiles], bbox=_bbox(recipe))
    return {**doc, "parts": parts}


def whole_view(recipe: Recipe, sources: dict[str, Path]) -> dict[str, Any] | None:
    """`ctx.shard` of an unsharded build: shard 1 of 1, every file and tile (None without `shards:`)."""
    if recipe.shards is None:
        return None
    tiles = tile_runs(recipe, 1)[0] if recipe.shards.by == "tile" else None
    return view(recipe, 1, 1, items(recipe, sources), tiles, parts=False)


def shard_files(recipe: Recipe, names: list[str]) -> list[tuple[Output, str]]:
    """The files a shard holds, per output in recipe order: its artifact, or (a COG) its parts
    among `names`, the shard folder's entries."""
    found: list[tuple[Output, str]] = []
    for o in recipe.outputs:
        art = recipe.artifact_name(o)
        found += [(o, n) for n in reduce_cog.part_names(names, art)] if o.format in PARTED else [(o, art)]
    return found


# -- one shard ---------------------------------------------------------------------------

def _check_shard_out(out: Path) -> None:
    """Replace only an earlier shard build (its shard.json and the files it lists)."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise D4CError(f"--out {out} exists and is not a folder", hint="choose a new or empty folder")
    entries = set(os.listdir(out))
    known = {SHARD_MANIFEST} | {o["file"] for o in read_shard_manifest(out / SHARD_MANIFEST).get("outputs", [])} \
        if SHARD_MANIFEST in entries else set()
    if entries and not entries <= known:
        raise D4CError(f"--out {out} is not empty and is not an earlier shard build",
                       hint="choose a new or empty folder; d4c replaces only its own builds")


def build_shard(recipe: Recipe, root: Path, out: Path, opts: pipeline.BuildOptions,
                index: int, count: int) -> dict[str, Any]:
    """Build shard `index` of `count` into `out`: its outputs and shard.json."""
    spec_of(recipe)
    code = opts.code if opts.code is not None else mf.code_state(root, recipe)
    need = needed_sources(recipe, index, count)
    subset = replace(recipe, sources=tuple(s for s in recipe.sources if s.name in need))
    sources = pipeline.resolve_sources(subset, opts.sources, opts.source_copies)
    spec = spec_of(recipe)
    tiles = tile_runs(recipe, count)[index - 1] if spec.by == "tile" else None
    mine = assign(items(recipe, sources), count, spec.by)[index - 1] if tiles != [] else []
    keep = {s.name for s in recipe.sources if s not in partitioned(recipe)} | {i.source for i in mine}
    sources = {n: p for n, p in sources.items() if n in keep}
    epoch = pipeline.source_date_epoch(root, recipe)
    params = pipeline.effective_params(recipe, opts.sample)
    out = out.absolute()
    _check_shard_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix="d4c-shard-"))
    try:
        run: RunResult | None = None
        if mine:  # a shard left without files (or tiles) runs nothing and reduces to nothing
            job = Job(recipe=recipe, repo_root=root, params=params, sources=sources, stage=stage, work=work,
                      source_date_epoch=epoch, sample=opts.sample, limits=lim.from_recipe(recipe.data),
                      sandbox=opts.sandbox, variation=opts.variation,
                      shard=view(recipe, index, count, mine, tiles, parts=True))
            log.info("building %s shard %d/%d (%d files%s) with the %s runner", recipe.id, index, count,
                     len(mine), "" if tiles is None else f", {len(tiles)} tiles", opts.runner)
            run = get_runner(opts.runner).run(job)
            outputs.accept(stage, [f for _, f in shard_files(recipe, os.listdir(stage))], where=recipe.folder.name)
        doc = shard_manifest(recipe, stage, run, (index, count, tiles), mine, params, epoch, opts.sample, code)
        atomic_write(stage / SHARD_MANIFEST, data=canonical.encode(doc))
        pipeline.publish(stage, out)
        return doc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def shard_manifest(recipe: Recipe, folder: Path, run: RunResult | None,
                   which: tuple[int, int, list[tile_math.Tile] | None], mine: list[Item],
                   params: dict[str, Any], epoch: int, sample: bool, code: dict[str, Any]) -> dict[str, Any]:
    """Inputs, outputs, tool versions and arguments of shard (index, count, its tiles or None)."""
    index, count, tiles = which
    env = None if run is None else {
        "runner": run.runner, "sandbox": run.sandbox, "network_isolation": run.network_isolation,
        "image_id": run.image_id, "python": run.python, "packages": dict(sorted(run.packages.items())),
        "tools": dict(sorted(run.tools.items()))}
    outs = []
    for o, name in shard_files(recipe, os.listdir(folder)) if run is not None else ():
        path = folder / name
        outs.append({"name": o.name, "file": path.name, "format": o.format, "size": path.stat().st_size,
                     "sha256": sha256_file(path),
                     "rows": pq.ParquetFile(path).metadata.num_rows if o.format in TABLES else None})
    spec = spec_of(recipe)
    return {
        "shard_manifest_version": SHARD_MANIFEST_VERSION,
        "dataset": {"id": recipe.id, "version": recipe.version, "recipe_sha256": recipe.sha256,
                    "files": dict(sorted((run.files if run else {}).items()))},
        "shard": {"index": index, "count": count, "by": spec.by, "key": spec.key, "reduce": spec.reduce,
                  **({} if tiles is None else {"level": spec.level, "tiles": [list(t) for t in tiles]})},
        "inputs": [i.doc() for i in mine],
        "outputs": outs,
        "environment": env,
        "arguments": {"params": params, "sample": sample, "source_date_epoch": epoch,
                      "transform": recipe.transform},
        "code": code,
    }


def read_shard_manifest(path: Path, hashed: list[str] | None = None) -> dict[str, Any]:
    """The shard manifest at `path`; `hashed` gets the sha256 of the very bytes parsed."""
    try:
        raw = path.read_bytes()
        doc = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise D4CError(f"{path}: not a readable shard manifest ({exc})",
                       hint="pass the folders `d4c build ID --shard N/M --out DIR` wrote") from None
    if not isinstance(doc, dict) or doc.get("shard_manifest_version") != SHARD_MANIFEST_VERSION:
        raise D4CError(f"{path}: not a shard manifest (version {SHARD_MANIFEST_VERSION})",
                       hint="pass the folders `d4c build ID --shard N/M --out DIR` wrote")
    # every field the reduce reads has its type before it is read (a shard folder is untrusted input)
    schemas.check("shard-manifest", doc, what="the shard manifest", where=str(path), hint="rebuild the shard")
    if hashed is not None:
        hashed.append(hashlib.sha256(raw).hexdigest())
    return doc
