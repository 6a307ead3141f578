"""Which datasets a git change touches: the job matrix for CI.

Rules (docs/workflows.md):
- a file under `datasets/<id>/` touches dataset `<id>`;
- `scripts/`, `docker/`, `schemas/`, `pyproject.toml`, `requirements*.lock` touch every dataset;
- a changed repo file that a dataset's transform imports (directly or transitively,
  resolved with `ast`) touches that dataset: shared helpers such as `datasets/_shared/`;
- a dataset whose recipe is gone at head is reported as deleted; deleting one that has
  any release record is an error, because releases are permanent;
- `release` lists the datasets whose recipe version has no `releases/<id>/<version>.json`.

Everything is read from git objects (never the work tree), so `--head` may be any ref;
d4c.plan_git reads them, d4c.plan_inputs parses recipes and transforms' imports.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d4c import fanout, model, semver
from d4c.errors import D4CError
from d4c.plan_git import Git
from d4c.plan_inputs import Wanted, read_datasets, transform_files

GLOBAL_PREFIXES = ("scripts/", "docker/", "schemas/")
GLOBAL_FILES = re.compile(r"^(pyproject\.toml|requirements[^/]*\.lock)$")
NULL_SHA = re.compile(r"^0{40}$")  # GitHub's `before` on a branch's first push
_SELECTOR = re.compile(rf"^(all|[a-z0-9_-]+(/{semver.PATTERN})?)$")
_RECIPE = re.compile(r"^datasets/([^/]+)/recipe\.yaml$")


@dataclass(frozen=True)
class Plan:
    datasets: list[str]
    deleted: list[str]
    release: list[str]
    all: bool
    # One row per dataset {"dataset", "version", "cache_key", "sample", "runs_on", "shards"} for
    # `datasets` and `release`: the cache key follows the sources' sha256; `sample` says the
    # recipe has a cheap PR build; `shards` is `shards.max` (0: a whole build)
    matrix: list[dict[str, Any]]
    release_matrix: list[dict[str, Any]]
    # The CI jobs of each (d4c.fanout.jobs): {"build": [row], "image": [row], "shard": [row +
    # "shard": "N/M", "shard_index"], "reduce": [row]}, every row with its `chunk` (chained runs)
    jobs: dict[str, list[dict[str, Any]]]
    release_jobs: dict[str, list[dict[str, Any]]]

    def to_json(self) -> dict[str, Any]:
        return {
            "datasets": self.datasets, "deleted": self.deleted, "release": self.release,
            "all": self.all, "matrix": self.matrix, "release_matrix": self.release_matrix,
            "jobs": self.jobs, "release_jobs": self.release_jobs,
            "chunks": fanout.chunks(self.jobs), "release_chunks": fanout.chunks(self.release_jobs),
        }


def for_run(data: dict[str, Any], chunk: int) -> dict[str, Any]:
    """The part of a plan that run `chunk` of a chain takes: that chunk's rows of every job, and
    the datasets it builds whole or reduces (which it also releases). docs/scale.md."""
    if not 1 <= chunk <= max(data["chunks"], data["release_chunks"]):
        raise D4CError(f"chunk {chunk}: this plan has {data['chunks']} chunk(s) for the change and "
                       f"{data['release_chunks']} for the release",
                       hint="a chained run passes the chunk after its own; the first run is chunk 1")
    built, releasing = fanout.built_in(data["jobs"], chunk), fanout.built_in(data["release_jobs"], chunk)
    return {**data, "chunk": chunk,
            "matrix": [r for r in data["matrix"] if r["dataset"] in built],
            "release_matrix": [r for r in data["release_matrix"] if r["dataset"] in releasing],
            "jobs": fanout.in_chunk(data["jobs"], chunk), "release_jobs": fanout.in_chunk(data["release_jobs"], chunk)}



def cache_key(recipe: dict[str, Any]) -> str:
    """A CI cache key that changes exactly when a source's bytes change."""
    hashes = sorted(str(s.get("sha256", "")) for s in recipe.get("sources") or [])
    return "d4c-sources-" + hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:32]


def _row(ds: str, r: dict[str, Any]) -> dict[str, Any]:
    """A dataset's CI row: `runs_on` is checked here, since it goes into the workflows' `runs-on`."""
    return {"dataset": ds, "version": str(r.get("version")), "cache_key": cache_key(r),
            "sample": bool(r.get("sample")), "runs_on": fanout.runs_on(r, f"datasets/{ds}/recipe.yaml"),
            "shards": fanout.shard_count(r)}


def _released(files: set[str], dataset: str) -> list[str]:
    return sorted(f for f in files if f.startswith(f"releases/{dataset}/") and f.endswith(".json"))


def plan(root: Path, base: str, head: str = "HEAD") -> Plan:
    """Compute the plan for the change base...head in the repository at `root`."""
    git = Git(root)
    try:
        return _plan(git, base, head)
    finally:
        git.close()


def commit_of(root: Path, ref: str) -> str:
    """The commit a ref names (a plan's head, for manifests that pin it)."""
    return Git(root).commit(ref)


def _deleted(base_files: set[str], head_files: set[str], ids: set[str],
             changes: list[tuple[str, str]]) -> list[str]:
    """The datasets gone at head; one that has a release record, or a deleted release record,
    is an error: releases are permanent."""
    old_ids = {m.group(1) for p in base_files if (m := _RECIPE.match(p))}
    deleted = sorted(old_ids - ids)
    for ds in deleted:
        records = _released(base_files | head_files, ds)
        if records:
            raise D4CError(
                f"datasets/{ds}: a published dataset was deleted ({len(records)} release "
                f"record(s), e.g. {records[0]})",
                hint="releases are permanent; restore the folder and mark the dataset deprecated",
            )
    for status, path in changes:  # a record may never go away
        if status == "D" and path.startswith("releases/") and path.endswith(".json"):
            raise D4CError(
                f"{path}: a release record was deleted",
                hint="releases are permanent; restore the file (deprecate a version instead)",
            )
    return deleted


# The recipe keys a plan reads (its rows and the transform's entry module)
_KEYS = ("version", "sources", "sample", "runs_on", "shards", "transform")


def _plan(git: Git, base: str, head: str) -> Plan:
    base_c = None if NULL_SHA.match(base) else git.commit(base)
    head_c = git.commit(head)
    changes = git.changes(base_c, head_c)
    base_files, head_files = git.files(base_c) if base_c else set(), git.files(head_c)
    git.preload(head_c, sorted(p for p in head_files if p.startswith("datasets/")
                               and (p.endswith(".py") or _RECIPE.match(p))))
    changed = {path for _, path in changes}
    touch_all = any(p.startswith(GLOBAL_PREFIXES) or GLOBAL_FILES.match(p) for p in changed)
    # `datasets/<id>/...` touches <id> (ids from recipe paths hold no `/`): one set, not a scan per dataset
    in_folder = {p.split("/", 2)[1] for p in changed if p.startswith("datasets/") and p.count("/") >= 2}

    def own(ds: str) -> bool:
        return touch_all or ds in in_folder

    found = [(m.group(1), p) for p in sorted(head_files) if (m := _RECIPE.match(p))]
    wanted = Wanted(files=head_files, changed=changed, skip=own, keep=_KEYS)
    read = read_datasets(git, head_c, found, wanted)
    datasets = {ds: d for (ds, _), d in zip(found, read, strict=True)}
    recipes = {ds: d.recipe for ds, d in datasets.items()}
    deleted = _deleted(base_files, head_files, set(recipes), changes)

    touched: set[str] = set()
    for ds, d in datasets.items():
        # lazily: parsing imports is only needed when nothing closer touched the dataset (a
        # forked worker may have scanned it already)
        if own(ds) or (d.loads_changed if d.loads_changed is not None else
                       bool(transform_files(functools.partial(git.read, head_c), ds, d.recipe, head_files) & changed)):
            touched.add(ds)

    release = sorted(
        ds for ds, r in recipes.items() if f"releases/{ds}/{r.get('version')}.json" not in head_files
    )
    ordered = sorted(touched)
    rows: dict[str, dict[str, Any]] = {}

    def row(ds: str) -> dict[str, Any]:  # a dataset in both matrices: made once, a copy in each
        if ds not in rows:
            rows[ds] = _row(ds, recipes[ds])
        return dict(rows[ds])

    matrix, release_matrix = [row(ds) for ds in ordered], [row(ds) for ds in release]
    return Plan(datasets=ordered, deleted=deleted, release=release, all=touch_all, matrix=matrix,
                release_matrix=release_matrix, jobs=fanout.jobs(matrix),
                release_jobs=fanout.jobs(release_matrix))


def released(root: Path, selector: str) -> dict[str, Any]:
    """Release records chosen by `all`, `<id>` or `<id>/<version>`, as a CI matrix for verify.

    Each row carries the commit that built the version, so the rebuild runs that commit's
    recipe, code and locked environment.
    """
    folder = root / "releases"
    sel = selector.strip().removesuffix(".json")
    if not _SELECTOR.match(sel):  # it may come from a workflow_dispatch input: no globs, no `..`
        raise D4CError(f"not a release selector: {selector[:80]!r}",
                       hint="use all, a dataset id, or <id>/<version>")
    pattern = "*/*.json" if sel == "all" else (f"{sel}.json" if "/" in sel else f"{sel}/*.json")
    rows = []
    for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        commit = model.load_record(path, checked=False).manifest.commit or ""
        rows.append({"record": path.relative_to(root).as_posix(), "dataset": path.parent.name,
                     "version": path.stem, "commit": str(commit)})
    if not rows:
        raise D4CError(f"no release record matches {selector!r} under {folder}",
                       hint="use all, a dataset id, or <id>/<version>")
    return {"records": [r["record"] for r in rows], "matrix": rows}


def dumps(p: Plan | dict[str, Any]) -> str:
    data = p.to_json() if isinstance(p, Plan) else p
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
