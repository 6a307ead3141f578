"""One build: sources -> transform (in a runner) -> artifacts + manifest + provenance.

Everything is written into a staging folder beside the output folder and renamed
into place only when the whole build succeeded, so `--out` never holds a
half-written build that looks complete.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from d4c import fetch, model, sample
from d4c.build import limits as lim
from d4c.build import manifest as mf
from d4c.build import outputs, provenance
from d4c.build.runners import NORMAL, Job, Variation, get_runner
from d4c.errors import D4CError
from d4c.recipe import Recipe

log = logging.getLogger("d4c.build")
MANIFEST = "manifest.json"
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class BuildOptions:
    runner: str = "local"
    sources: str = "auto"  # auto | mirrors | copies (only `source_copies`)
    sample: bool = False
    sandbox: bool = True  # False: `--no-sandbox`, recorded in the manifest and refused by release
    variation: Variation = NORMAL  # what the transform's world looks like (`--check` varies it)
    # The checkout's commit/tree/dirty, taken once when the build starts (--check takes it
    # once for both runs: a commit landing in between is not a reproducibility failure).
    code: dict[str, Any] | None = None
    # sha256 -> URLs said to hold that source (a release record's or a bundle's mirrors),
    # tried before the recipe's URLs: how `d4c verify` rebuilds with the origin gone.
    source_copies: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # A recipe with `shards:` builds as its shards plus the reduce (d4c.build.shards), unless
    # `whole`: one process over every file, the build whose bytes the sharded one must equal.
    whole: bool = False
    jobs: int | None = None  # parallel shard builds (default: the CPU count)


def source_date_epoch(root: Path, recipe: Recipe) -> int:
    """The time of the last commit touching the dataset folder; 0 when not in git."""
    proc = subprocess.run(
        ["git", "log", "-1", "--format=%ct", "--", str(recipe.folder)],
        cwd=root, capture_output=True, text=True, check=False,
    )
    if proc.returncode == 0 and proc.stdout.strip():
        return int(proc.stdout.strip())
    # Outside git (an unpacked bundle, a tarball), the reproducible-builds convention applies.
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if env.isdigit():
        log.info("%s is not committed to git: SOURCE_DATE_EPOCH=%s from the environment",
                 recipe.folder, env)
        return int(env)
    log.warning("%s is not committed to git: SOURCE_DATE_EPOCH=0", recipe.folder)
    return 0


def effective_params(recipe: Recipe, sample: bool) -> dict[str, Any]:
    params = recipe.params
    if sample:
        params.update((recipe.data.get("sample") or {}).get("params") or {})
    return params


def resolve_sources(recipe: Recipe, mode: str,
                    copies: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> dict[str, Path]:
    """Verified local paths of every source (the fetch step checks each sha256)."""
    if mode == "copies":  # `d4c verify --mirror`: those copies and nothing else
        return fetch.fetch_sources(recipe, mode="mirrors", jobs=fetch.DEFAULT_JOBS,
                                 copies=dict(copies), defaults=False)
    if mode not in fetch.MODES:
        raise D4CError(f"unknown sources mode {mode!r}", hint=f"use one of {', '.join(fetch.MODES)}")
    # fetch adds D4C_MIRRORS and the repository's local publish folder as mirrors itself.
    return fetch.fetch_sources(recipe, mode="mirrors" if mode == "mirrors" else "auto", jobs=fetch.DEFAULT_JOBS,
                               copies=dict(copies))


def build_sources(recipe: Recipe, opts: BuildOptions) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Every source's local path, and for a sample build the facts of what was sampled: a
    source with a `sample.sources` range or members is read in part (d4c.sample), never whole."""
    if not opts.sample:
        return resolve_sources(recipe, opts.sources, opts.source_copies), []
    sampled, facts = sample.resolve(recipe, "mirrors" if opts.sources in ("mirrors", "copies") else "auto")
    rest = replace(recipe, sources=tuple(s for s in recipe.sources if s.name not in sampled))
    found = {**resolve_sources(rest, opts.sources, opts.source_copies), **sampled}
    return {s.name: found[s.name] for s in recipe.sources}, facts


def check_out_dir(out: Path, dataset_id: str | None = None) -> None:
    """Refuse to replace anything but an earlier d4c build: `--out ~` must not cost a home folder.

    An earlier build is a folder holding only a valid manifest (of this dataset), its
    provenance and the files that manifest lists: a JSON that merely looks like one is not.
    """
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise D4CError(f"--out {out} exists and is not a folder", hint="choose a new or empty folder")
    entries = set(os.listdir(out))
    if not entries:
        return
    known: set[str] = set()
    try:
        manifest = model.load_manifest(out / MANIFEST)
        if dataset_id is None or manifest.dataset_id == dataset_id:
            known = {o.file for o in manifest.outputs} | {MANIFEST, PROVENANCE}
    except D4CError:
        known = set()
    if not known or not entries <= known:
        raise D4CError(f"--out {out} is not empty and is not an earlier d4c build output",
                       hint="choose a new or empty folder; d4c replaces only its own builds")


def publish(stage: Path, out: Path) -> None:
    """Swap the finished staging folder into `out`; the old build goes to a fresh name of ours
    first (never a fixed neighbour name that someone else's folder could hold), then away."""
    old: Path | None = None
    if os.path.lexists(out):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "build")
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _whole_view(recipe: Recipe, sources: dict[str, Path]) -> dict[str, Any] | None:
    if recipe.shards is None:
        return None
    from d4c.build import shards

    return shards.whole_view(recipe, sources)


def build(recipe: Recipe, root: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """Build `recipe` into `out`; return the manifest. Raises D4CError on any failure."""
    if not recipe.outputs:
        raise D4CError(f"{recipe.path}: the recipe declares no outputs", hint="add `outputs:`")
    if recipe.shards is not None:
        from d4c.build import shard_reduce, shards  # they build on this module

        shards.spec_of(recipe)
        if opts.sample and sample.specs(recipe):
            raise D4CError(f"{recipe.path}: `sample.sources` and `shards:` together are not supported",
                           hint="shard the full build only, or sample with `sample.params`")
        if not opts.whole:
            return shard_reduce.build_local(recipe, root, out, opts, opts.jobs)
    code = opts.code if opts.code is not None else mf.code_state(root, recipe)
    sources, sampled = build_sources(recipe, opts)
    epoch = source_date_epoch(root, recipe)
    params = effective_params(recipe, opts.sample)
    limits = lim.from_recipe(recipe.data)
    out = out.absolute()
    check_out_dir(out, recipe.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix="d4c-build-"))
    try:
        job = Job(recipe=recipe, repo_root=root, params=params, sources=sources, stage=stage,
                  work=work, source_date_epoch=epoch, sample=opts.sample, limits=limits,
                  sandbox=opts.sandbox, variation=opts.variation, shard=_whole_view(recipe, sources),
                  sample_bbox=sample.bboxes(recipe) if opts.sample else {})
        log.info("running %s v%s transform with the %s runner (%s)", recipe.id, recipe.version,
                 opts.runner, limits.describe())
        if not opts.sandbox:
            log.warning("--no-sandbox: the transform runs with no isolation; release refuses this build")
        result = get_runner(opts.runner).run(job)
        outputs.accept(stage, [recipe.artifact_name(o) for o in recipe.outputs], where=str(recipe.folder.name))
        log.info("transform done (sandbox: %s); hashing and describing outputs", result.sandbox)
        manifest = mf.make(recipe, root, stage, result, params, epoch, opts.sample, code, sampled)
        mf.write(stage / MANIFEST, manifest)
        mf.write(stage / PROVENANCE, provenance.statement(manifest))
        publish(stage, out)
        return manifest
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
