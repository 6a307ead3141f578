"""Runners: where a transform's worker process runs (a Protocol and a registry).

Adding a runner is one module and one entry in `RUNNERS`. Both runners hand the
worker the same spec and the same fixed environment; only the paths differ.
"""
from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from d4c.errors import D4CError
from d4c.recipe import Recipe


@dataclass(frozen=True)
class Job:
    """One transform run, in host paths."""

    recipe: Recipe
    repo_root: Path
    params: dict[str, Any]
    sources: dict[str, Path]  # verified source paths (files or extracted folders)
    stage: Path  # empty output folder; renamed into place by the caller on success
    work: Path  # private folder: spec, result, the transform's cwd and scratch space
    source_date_epoch: int
    sample: bool = False


@dataclass(frozen=True)
class RunResult:
    runner: str
    network_isolation: str  # unshare | bwrap | container | none
    python: str
    packages: dict[str, str]
    image_id: str | None = None


class Runner(Protocol):
    name: str

    def run(self, job: Job) -> RunResult: ...


RUNNERS: dict[str, str] = {
    "local": "d4c.build.runners.local:LocalRunner",
    "container": "d4c.build.runners.container:ContainerRunner",
}


def get_runner(name: str) -> Runner:
    if name not in RUNNERS:
        raise D4CError(f"unknown runner {name!r}", hint=f"use one of {', '.join(RUNNERS)}")
    module, _, cls = RUNNERS[name].partition(":")
    runner: Runner = getattr(importlib.import_module(module), cls)()
    return runner


def fixed_env(source_date_epoch: int, scratch: str, path: str) -> dict[str, str]:
    """The whole environment a transform sees: nothing leaks in from the host."""
    return {
        "HOME": scratch,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PATH": path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "TMPDIR": scratch,
        "TZ": "UTC",
        "XDG_CACHE_HOME": scratch,
    }


def worker_spec(job: Job, to: Callable[[Path], str], guarded: list[str]) -> dict[str, Any]:
    """The worker's instructions, with every host path mapped through `to`."""
    recipe = job.recipe
    code = sorted(p for p in recipe.folder.rglob("*.py") if "sources" not in p.relative_to(recipe.folder).parts)
    return {
        "dataset_id": recipe.id,
        "version": recipe.version,
        "transform": recipe.transform,
        "dataset_dir": to(recipe.folder),
        "params": job.params,
        "sources": {n: to(p) for n, p in sorted(job.sources.items())},
        "outputs": {
            o.name: {"format": o.format, "file": recipe.artifact_name(o), "sort_by": list(o.sort_by)}
            for o in recipe.outputs
        },
        "out_dir": to(job.stage),
        "scratch": to(job.work / "scratch"),
        "workdir": to(job.work / "cwd"),
        "result": to(job.work / "ctl" / "result.json"),
        "guarded": guarded,
        # The dataset's own code, and bytecode a Python import may have cached beside it.
        "readable": [to(p) for p in (*job.sources.values(), *code, recipe.folder / "__pycache__")],
        "source_date_epoch": job.source_date_epoch,
        "sample": job.sample,
    }


def prepare_work(job: Job) -> None:
    for sub in ("scratch", "cwd", "ctl"):
        (job.work / sub).mkdir(parents=True, exist_ok=True)


def read_outcome(job: Job, returncode: int) -> dict[str, Any]:
    """The worker's result, or one clear error naming what went wrong."""
    tf = job.recipe.transform
    where = f"{job.recipe.folder.name}/{tf['python']}" if "python" in tf else f"{job.recipe.folder.name} command"
    result = job.work / "ctl" / "result.json"
    if not result.is_file():
        raise D4CError(f"the transform process ended (status {returncode}) without a result",
                       where=where, hint="see the output above")
    outcome: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    if outcome["status"] == "violation":
        raise D4CError(f"sandbox violation: {outcome['message']}", where=where)
    if outcome["status"] != "ok":
        raise D4CError(f"transform failed: {outcome['message']}", where=where,
                       hint="the transform's traceback is printed above")
    return outcome
