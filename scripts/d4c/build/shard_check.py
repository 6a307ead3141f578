"""`--check` of a sharded build: every shard and the reduce, then a seeded subset of the shards
rebuilt twice (normal and varied) and the reduce again over those rebuilds; the shards built
here (`d4c build ID --check`) or elsewhere, one CI job each (`--reduce DIR... --check`).
docs/scale.md.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from d4c import canonical
from d4c.atomic import atomic_write
from d4c.build import check, pipeline
from d4c.build import manifest as mf
from d4c.build.shard_reduce import build_local, check_subset, reduce, shards_dir
from d4c.build.shards import SHARD_MANIFEST, build_shard, read_shard_manifest, spec_of
from d4c.errors import D4CError
from d4c.recipe import Recipe

log = logging.getLogger("d4c.build")


def check_local(recipe: Recipe, root: Path, out: Path, opts: pipeline.BuildOptions) -> dict[str, Any]:
    """`d4c build ID --check` of a recipe with `shards:`: every shard here, in parallel processes."""
    out = out.absolute()
    pipeline.check_out_dir(out, recipe.id)
    opts = replace(opts, code=opts.code if opts.code is not None else mf.code_state(root, recipe))
    first = out.with_name(f".{out.name}.check-1")
    for folder in (first, shards_dir(first)):
        shutil.rmtree(folder, ignore_errors=True)
    manifest = build_local(recipe, root, first, opts)
    count = spec_of(recipe).max
    _recheck(recipe, root, {i: shards_dir(first) / str(i) for i in range(1, count + 1)}, first, out, opts, manifest)
    shutil.rmtree(shards_dir(out), ignore_errors=True)
    os.replace(shards_dir(first), shards_dir(out))
    return manifest


def check_reduce(recipe: Recipe, root: Path, folders: list[Path], out: Path,
                 opts: pipeline.BuildOptions) -> dict[str, Any]:
    """`--reduce DIR... --check`: the shards were built elsewhere (one CI job each); reduce them,
    then rebuild the seeded subset here twice and reduce again, as check_local does."""
    out = out.absolute()
    pipeline.check_out_dir(out, recipe.id)
    opts = replace(opts, code=opts.code if opts.code is not None else mf.code_state(root, recipe))
    first = out.with_name(f".{out.name}.check-1")
    shutil.rmtree(first, ignore_errors=True)
    manifest = reduce(recipe, root, folders, first, opts)
    by_index = {read_shard_manifest(f / SHARD_MANIFEST)["shard"]["index"]: f.absolute() for f in folders}
    _recheck(recipe, root, by_index, first, out, opts, manifest)
    return manifest


def _recheck(recipe: Recipe, root: Path, built: dict[int, Path], first: Path, out: Path,
             opts: pipeline.BuildOptions, manifest: dict[str, Any]) -> None:
    """Rebuild the seeded subset of `built` (index -> shard folder) twice, compare, reduce again
    over the varied rebuilds, compare with `first` (the reduce of `built`); publish `first` to `out`."""
    again = out.with_name(f".{out.name}.check-2")
    shutil.rmtree(again, ignore_errors=True)
    count = spec_of(recipe).max
    held = [i for i in range(1, count + 1) if read_shard_manifest(built[i] / SHARD_MANIFEST)["inputs"]]
    seed, chosen = check_subset(recipe, held)
    log.info("--check: rebuilding shards %s of %d twice (seed %d), then the reduce", chosen, count, seed)
    diffs: list[tuple[str, list[str]]] = []
    for i in chosen:
        for v, variation in enumerate(check.VARIATIONS):
            folder = again / f"{i}-{v + 1}"
            with check.varied_host(v):
                doc = build_shard(recipe, root, folder, replace(opts, variation=variation), i, count)
            files = [(SHARD_MANIFEST, "json"), *((o["file"], o["format"]) for o in doc["outputs"])]
            diffs += [(f"shard {i}/{count} (build {v + 2} of 3): {n}", why)
                      for n, why in check.compare(built[i], folder, files)]
    dirs = [again / f"{i}-2" if i in chosen else built[i] for i in range(1, count + 1)]
    with check.varied_host(1):
        reduce(recipe, root, dirs, again / "reduce", opts)
    names = [(o["file"], o["format"]) for o in manifest["outputs"]] + \
        [(pipeline.MANIFEST, "json"), (pipeline.PROVENANCE, "json")]
    diffs += [(f"reduce: {n}", why) for n, why in check.compare(first, again / "reduce", names)]
    result = check.check_result_path(out)
    check.write_result(result, recipe, [n for n, _ in names], diffs, None,
                       None if diffs else check.manifest_sha256(first))
    doc = json.loads(result.read_bytes())
    doc["shards"] = {"count": count, "seed": seed, "rebuilt": chosen}
    atomic_write(result, data=canonical.encode(doc))
    shutil.rmtree(again, ignore_errors=True)
    if diffs:
        raise D4CError(f"sharded build is not reproducible: {diffs[0][0]} differs",
                       hint=f"{diffs[0][1][0] if diffs[0][1] else ''} (see {result.name}); "
                            f"the first build is kept in {first}")
    pipeline.publish(first, out)
