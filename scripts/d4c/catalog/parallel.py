"""`d4c catalog build` across the cores: forked workers map runs of dataset folders.

Reading records and mapping them to items is Python, one core's work; the Parquet write
is one stream. So the dataset folders are cut into runs, each forked worker reads and
maps a run into a spill file of its own (d4c.catalog.spill), and the parent writes every
spill in dataset order (d4c.catalog.build.write_parts). The rows, and so the bytes, do
not depend on the runs: the writer cuts row groups by dataset and re-encodes each group
from contiguous arrays. A run that fails with a D4CError is mapped again in the parent,
which raises that error, so the one line, and which dataset's comes first, is the serial
build's.
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from d4c.catalog.build import Metadata, Part, map_datasets, metadata_from, write_parts
from d4c.catalog.collections import Collection
from d4c.catalog.records import dataset_folders, iter_datasets
from d4c.catalog.spill import Spill
from d4c.errors import D4CError

# Below this many datasets one process maps them all: forking costs more than it saves.
POOL_MIN = 16
# Runs a worker: the last run's worker finishes alone, so shorter runs leave less idle;
# a run costs a spill file and a small Arrow conversion, next to nothing.
RUNS = 8
# What forked workers inherit (set before the pool forks: the metadata function is a
# closure, which cannot be pickled).
_JOB: dict[str, Any] = {}


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run(index: int, folders: list[str]) -> Part:
    job = _JOB
    return map_datasets(iter_datasets(job["releases"], folders),
                        Spill(job["tmp"], f"part-{index:05d}"), job["meta"], job["tree"])


def _work(arg: tuple[int, list[str]]) -> Part | None:
    """A worker's run; None when it fails with a D4CError (the parent reports it)."""
    try:
        return _run(*arg)
    except D4CError:
        return None


def build_from_releases(
    releases: Path,
    out: Path,
    *,
    metadata: Metadata | None = None,
    collections_dir: Path | None = None,
    workers: int | None = None,
) -> tuple[int, dict[str, Collection]]:
    """Write `out` (and the static tree when asked) from every record under `releases/`;
    returns (versions, collections). `workers`: processes (default: the usable cores)."""
    folders = dataset_folders(releases)
    count = workers or cores()
    with tempfile.TemporaryDirectory(prefix="d4c-catalog-") as tmp:
        _JOB.update(releases=releases, tmp=Path(tmp), tree=collections_dir,
                    meta=metadata or metadata_from(None))
        try:
            if count < 2 or len(folders) < POOL_MIN or "fork" not in multiprocessing.get_all_start_methods():
                parts = [_run(0, folders)]
            else:
                parts = _pooled(folders, count)
        finally:
            _JOB.clear()
        if not any(spill.rows for spill, _ in parts):
            raise D4CError(f"no release records under {releases}", hint="pass --releases DIR")
        return write_parts(parts, out, collections_dir)


def _pooled(folders: list[str], count: int) -> list[Part]:
    size = -(-len(folders) // (count * RUNS))
    runs = list(enumerate(folders[i:i + size] for i in range(0, len(folders), size)))
    # pyarrow's first conversion from Python objects imports pandas (0.5 s of CPU): once
    # here, inherited by the fork, rather than once in every worker.
    pa.array([""], pa.string())
    pool = multiprocessing.get_context("fork").Pool(count)
    try:
        done = pool.map(_work, runs, chunksize=1)
    finally:
        pool.close()  # the workers exit before the parent goes on (they hold copies of its pipes)
        pool.join()
    return [part if part is not None else _run(*run) for run, part in zip(runs, done, strict=True)]
