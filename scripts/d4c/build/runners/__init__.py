"""Runners: where a transform's worker process runs (a Protocol, a registry, shared parts).

Both runners give the worker the same view: the dataset's code at /d4c/dataset (a
read-only copy of the bytes that were hashed), each source at /d4c/sources/<n>-<name>,
the output folder at /d4c/out (the only writable place besides a size-capped tmpfs
/tmp), the same fixed environment, and the same limits. The worker reads its spec
on stdin and writes its outcome on stdout; the transform's own output is relayed
line by line with a prefix, so it cannot pose as d4c (or as a CI workflow command).
`supervise.py` is the host's side of a run (limits, relay, outcome). Docs: docs/security.md.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from d4c.build.limits import DEFAULTS, Limits
from d4c.errors import D4CError
from d4c.recipe import Recipe

MOUNT = Path("/d4c")  # where the worker sees its files in a normal build
DEFAULT_ENVIRONMENT = "docker/Dockerfile"  # a recipe's `environment:` when it names none
SANDBOX_UID = 65534  # "nobody": the uid a transform runs as when d4c itself runs as root


@dataclass(frozen=True)
class Variation:
    """What the transform's world looks like. A normal build uses NORMAL; `--check` builds a
    second time with every field changed (as reprotest does), and the bytes must not move."""

    tz: str = "UTC"
    locale: str = "C.UTF-8"
    umask: int = 0o022
    mount: str = str(MOUNT)  # the build path: where dataset, sources and outputs appear
    hostname: str = "d4c-build"
    user: str = "d4c"
    cpus: int | None = None  # CPUs the transform may run on (None: all of this machine's)
    listing: str = "sorted"  # the order a folder of the dataset or a source lists (bubblewrap)


NORMAL = Variation()
VARIED = Variation(tz="Pacific/Chatham", locale="fr_CA.UTF-8", umask=0o077, mount="/build/check-2/d4c",
                   hostname="d4c-check-2", user="d4c-check", cpus=1, listing="reversed")


@dataclass(frozen=True)
class Job:
    """One transform run, in host paths."""

    recipe: Recipe
    repo_root: Path
    params: dict[str, Any]
    sources: dict[str, Path]  # verified source paths (files or extracted folders)
    stage: Path  # empty output folder; renamed into place by the caller on success
    work: Path  # private host folder: the dataset snapshot (and scratch without a sandbox)
    source_date_epoch: int
    sample: bool = False
    limits: Limits = DEFAULTS
    sandbox: bool = True  # False only with `d4c build --no-sandbox`: recorded, refused by release
    variation: Variation = NORMAL
    shard: dict[str, Any] | None = None  # `ctx.shard`: index, count and its files (d4c.build.shards.view)
    sample_bbox: dict[str, list[float]] = field(default_factory=dict)  # `ctx.sample_bbox` (d4c.sample)

    @property
    def mount(self) -> Path:
        return Path(self.variation.mount)


@dataclass(frozen=True)
class RunResult:
    runner: str
    sandbox: str  # bubblewrap | container | none
    network_isolation: str  # bwrap | container | none
    python: str
    packages: dict[str, str]
    image_id: str | None = None
    tools: dict[str, str] = field(default_factory=dict)  # command-line tools on the build's PATH (d4c.build.tools)
    files: dict[str, str] = field(default_factory=dict)  # dataset file -> sha256 of what ran


class Runner(Protocol):
    name: str

    def run(self, job: Job) -> RunResult: ...


RUNNERS: dict[str, str] = {
    "local": "d4c.build.runners.local:LocalRunner",
    "container": "d4c.build.runners.container:ContainerRunner",
}


def environment_file(recipe: Recipe) -> str:
    """The recipe's build environment: a Dockerfile's path in the repository."""
    return str(recipe.data.get("environment") or DEFAULT_ENVIRONMENT)


def get_runner(name: str) -> Runner:
    if name not in RUNNERS:
        raise D4CError(f"unknown runner {name!r}", hint=f"use one of {', '.join(RUNNERS)}")
    module, _, cls = RUNNERS[name].partition(":")
    runner: Runner = getattr(importlib.import_module(module), cls)()
    return runner


def fixed_env(source_date_epoch: int, scratch: str, path: str, v: Variation = NORMAL) -> dict[str, str]:
    """The whole environment a transform sees: an allow-list, nothing inherited from the host."""
    return {
        "HOME": scratch,
        "LANG": v.locale,
        "LC_ALL": v.locale,
        "LOGNAME": v.user,
        "USER": v.user,
        "PATH": path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "TMPDIR": scratch,
        "TZ": v.tz,
        "XDG_CACHE_HOME": scratch,
        "GDAL_PAM_ENABLED": "NO",  # no .aux.xml side files next to rasters
        # the date GDAL writes where a format wants "now" (GeoPackage's last_change)
        "OGR_CURRENT_DATE": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(source_date_epoch)),
    }


def snapshot_dataset(job: Job) -> tuple[Path, dict[str, str]]:
    """Copy the dataset's code into the work folder from the bytes that are hashed here.

    The recipe comes from the very bytes whose sha256 the manifest records; every other
    file (transform, helpers, scripts) is read once, hashed and written from that read.
    `sources/` is not code: sources reach the sandbox by hash, one mount each.
    """
    recipe = job.recipe
    raw = recipe.raw or recipe.path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != recipe.sha256:
        raise D4CError(f"{recipe.path} changed after it was read", hint="run the build again")
    dest = job.work / "dataset"
    dest.mkdir(parents=True)
    files: dict[str, str] = {}
    for path in sorted(recipe.folder.rglob("*")):
        rel = path.relative_to(recipe.folder)
        if rel.parts[0] in ("sources", "__pycache__") or "__pycache__" in rel.parts or path.is_dir():
            continue
        if path.is_symlink() or not path.is_file():
            raise D4CError(f"{path}: dataset folders hold regular files only (a link or device was found)",
                           hint="replace the link with the file itself")
        data = raw if rel == Path(recipe.path.name) else path.read_bytes()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, 0o755 if os.access(path, os.X_OK) else 0o644)
        files[rel.as_posix()] = hashlib.sha256(data).hexdigest()
    for folder in (dest, *(p for p in dest.rglob("*") if p.is_dir())):
        os.chmod(folder, 0o755)
    return dest, files


def shareable(job: Job) -> Job:
    """The job with every source readable by the sandbox's unprivileged user: a file kept in
    git under a strict umask (0600) is copied into the work folder as 0444 (the cache already
    is; extracted folders are normalised when unpacked)."""
    sources = dict(job.sources)
    for i, (name, path) in enumerate(sorted(job.sources.items())):
        if path.is_file() and not path.stat().st_mode & 0o004:
            copy = job.work / "sources" / f"{i}-{path.name}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            os.chmod(copy, 0o444)
            sources[name] = copy
    return replace(job, sources=sources)


def source_mounts(job: Job) -> list[tuple[Path, Path]]:
    """(host path, sandbox path) of every source: one mount each, named by position and name."""
    return [(path.resolve(), job.mount / "sources" / f"{i}-{Path(name).name}")
            for i, (name, path) in enumerate(sorted(job.sources.items()))]


def worker_spec(job: Job, dataset: str, sources: dict[str, str], out: str, scratch: str,
                drop_to: int | None, files: dict[str, str]) -> dict[str, Any]:
    """The worker's instructions, in the paths the worker sees."""
    recipe = job.recipe
    return {
        "dataset_id": recipe.id,
        "version": recipe.version,
        "transform": recipe.transform,
        "dataset_dir": dataset,
        "params": job.params,
        "sources": sources,
        "outputs": {
            o.name: {"format": o.format, "file": recipe.artifact_name(o), "sort_by": list(o.sort_by)}
            for o in recipe.outputs
        },
        "out_dir": out,
        "scratch": scratch,
        "workdir": os.path.join(scratch, "work" if job.variation == NORMAL else "work-check-2"),
        "umask": job.variation.umask,
        "cpus": job.variation.cpus,
        "guarded": [dataset],
        # The audit hook's courtesy check: data comes from declared sources, code from the folder.
        "readable": [*(os.path.join(dataset, f) for f in files if f.endswith(".py")),
                     os.path.join(dataset, "__pycache__"), *sources.values()],
        "source_date_epoch": job.source_date_epoch,
        "sample": job.sample,
        "sample_bbox": job.sample_bbox,
        "limits": {"memory": job.limits.memory, "processes": job.limits.processes,
                   "output_size": job.limits.output_size},
        "drop_to": drop_to,
        "shard": job.shard,
    }


def prepare_stage(job: Job, uid: int | None) -> None:
    """Let the sandbox user (not root) write the output folder, and nothing else of ours."""
    os.chmod(job.stage, 0o755)
    if uid is not None:
        os.chown(job.stage, uid, uid)


def which_or_fail(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise D4CError(f"the build sandbox needs {tool}, and it is not installed", hint=hint)
    return found
