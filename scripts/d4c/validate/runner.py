"""Find recipes, check each (in parallel when there are many), then the cross-recipe lints."""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from d4c.errors import UsageError
from d4c.validate import schema
from d4c.validate.checks_files import (
    check_outputs,
    check_sample_sources,
    check_sources,
    check_transform,
    check_urls,
)
from d4c.validate.checks_meta import check_identity, check_metadata
from d4c.validate.checks_shards import check_shards
from d4c.validate.context import Context
from d4c.validate.lints import Finding
from d4c.validate.yamlpos import MAX_BYTES, load_bytes

RECIPE = "recipe.yaml"
PARALLEL_FROM = 48  # below this, starting workers costs more than it saves

# (id, line, col) of a recipe's `id`, for the duplicate-id lint across files.
IdAt = tuple[str, int, int] | None


def discover(targets: Sequence[Path]) -> list[Path]:
    """Recipe files named by PATHs: a recipe file, a dataset folder, or a folder of datasets."""
    found: list[Path] = []
    for target in targets:
        if target.is_file():
            found.append(target)
        elif (target / RECIPE).is_file():
            found.append(target / RECIPE)
        elif target.is_dir():
            recipes = sorted(p for p in target.glob(f"*/{RECIPE}") if not p.parent.name.startswith("."))
            if not recipes:
                raise UsageError(f"no {RECIPE} found in {target} or its subfolders",
                                 hint="pass a recipe file, a dataset folder or a folder of datasets")
            found.extend(recipes)
        elif target.exists():
            raise UsageError(f"{target}: not a regular file or folder", hint="pass a recipe file")
        else:
            raise UsageError(f"{target}: no such file or folder", hint="check the path")
    unique: dict[Path, Path] = {}
    for path in found:  # the same file named twice (relative and absolute) is checked once
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def display_path(path: Path) -> str:
    """Relative to the working directory when inside it (what CI annotations expect)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def check_file(path: Path, allow_loopback: bool = False) -> tuple[list[Finding], IdAt]:
    """All single-file findings for one recipe, and where its id is (for duplicates)."""
    shown = display_path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        return [Finding(shown, 1, 1, "D4C102", f"cannot read the file: {exc.strerror}")], None
    if len(raw) > MAX_BYTES:  # never read (or parse) more than the limit
        return [Finding(shown, 1, 1, "D4C101", f"file is {size} bytes; the limit is {MAX_BYTES}")], None
    loaded = load_bytes(raw, shown)
    if loaded.data is None and loaded.findings:
        return loaded.findings, None
    ctx = Context(loaded, shown, path, allow_loopback)
    ctx.found.extend(loaded.findings)
    # URLs first: a URL they report is not also reported as a schema pattern mismatch
    judged = check_urls(ctx) if isinstance(loaded.data, dict) else set()
    ctx.found.extend(schema.findings(loaded, shown, judged))
    if isinstance(loaded.data, dict):
        for check in (check_identity, check_metadata, check_sources, check_sample_sources, check_outputs,
                      check_transform, check_shards):
            check(ctx)
    rid = ctx.text("id")
    id_at = (rid, *loaded.pos(("id",))) if rid else None
    return ctx.found, id_at


def _duplicates(results: Iterable[tuple[str, IdAt]]) -> list[Finding]:
    first: dict[str, str] = {}
    out = []
    for shown, at in results:
        if at is None:
            continue
        rid, line, col = at
        if rid in first:
            out.append(Finding(shown, line, col, "D4C303", f"id `{rid[:80]}` is also used by {first[rid]}"))
        else:
            first[rid] = shown
    return out


def validate_paths(targets: Sequence[Path], allow_loopback: bool = False,
                   jobs: int | None = None) -> list[Finding]:
    """Validate recipes; findings sorted by file, line, column. Writes nothing."""
    files = discover(targets)
    schema.validator()  # compile before forking so that workers inherit it
    work = partial(check_file, allow_loopback=allow_loopback)
    jobs = jobs or min(os.cpu_count() or 1, 8)
    if jobs > 1 and len(files) >= PARALLEL_FROM:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            results = list(pool.map(work, files, chunksize=max(1, len(files) // (jobs * 4))))
    else:
        results = [work(f) for f in files]
    findings = [f for found, _ in results for f in found]
    findings += _duplicates((display_path(p), at) for p, (_, at) in zip(files, results))
    return sorted(set(findings))
