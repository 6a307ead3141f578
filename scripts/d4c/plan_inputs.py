"""What `d4c plan` reads of each dataset: its recipe parsed as YAML 1.2 and the repo files its
transform imports (an `ast` scan cached by content), across forked workers when there are
many. d4c.plan decides from these; d4c.plan_git reads the blobs.
"""
from __future__ import annotations

import ast
import functools
import gc
import multiprocessing
import os
import posixpath
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from _ruamel_yaml import CParser  # libyaml's C parser (ruamel.yaml.clib)
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from d4c.errors import D4CError
from d4c.plan_git import Git


class Resolver12(VersionedResolver):
    """ruamel's YAML 1.2 resolver without its per-scalar costs: libyaml's C parser never reports
    a `%YAML` directive to ruamel, so every document already resolved as 1.2; the rules are
    built once per process instead of once per document (measured: 25-40% less YAML time)."""

    _rules: ClassVar[dict[Any, Any]] = {}
    _scalars: ClassVar[dict[tuple[Any, Any], Any]] = {}

    @property
    def processing_version(self) -> Any:
        return (1, 2)

    @property
    def versioned_resolver(self) -> Any:
        if not Resolver12._rules:
            Resolver12._rules.update(super().versioned_resolver)
        return Resolver12._rules

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """A plain scalar's tag, from (value, implicit) alone with the rules fixed: kept, as keys
        and many values repeat in every recipe (a Tag is not changed once made). Short values only:
        a long one seldom repeats, and the memory stays small."""
        if (kind is not ScalarNode or self.yaml_path_resolvers or not isinstance(implicit, tuple)
                or len(value) > 64):
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = Resolver12._scalars.get(key)
        if tag is None:
            if len(Resolver12._scalars) >= 65536:
                Resolver12._scalars.clear()
            tag = Resolver12._scalars[key] = super().resolve(kind, value, implicit)
        return tag


class _Loader(CParser, SafeConstructor, Resolver12):  # type: ignore[misc]
    """What `YAML(typ="safe").load` builds for each document (libyaml's C parser, ruamel's safe
    constructor, duplicate keys refused), its class made once: ruamel makes the class anew for
    every document (measured: 30% of a recipe's YAML time)."""

    def __init__(self, stream: bytes) -> None:
        CParser.__init__(self, stream)
        self._parser = self._composer = self
        SafeConstructor.__init__(self, loader=self)
        self.allow_duplicate_keys = False
        Resolver12.__init__(self, version=None, loadumper=self)


def load_yaml(raw: bytes) -> Any:
    """One YAML 1.2 document, as ruamel's own C loader reads it; raises YAMLError, ValueError."""
    loader = _Loader(raw)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def recipe_yaml(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = load_yaml(raw)
    except (YAMLError, ValueError):  # ValueError: an integer past Python's 4,300 digits
        raise D4CError(f"{where}: not valid YAML", hint="run `d4c validate`") from None
    if not isinstance(data, dict):
        raise D4CError(f"{where}: a recipe must be a mapping", hint="run `d4c validate`")
    return data


@dataclass(frozen=True)
class Wanted:
    """What the planner needs of each dataset: `keep`, the recipe keys it reads; whether the
    transform loads one of `changed` (of the head tree's `files`), for datasets not in `skip`."""
    files: set[str]
    changed: set[str]
    skip: Callable[[str], bool]
    keep: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    recipe: dict[str, Any]  # only the `keep` keys
    loads_changed: bool | None  # None: not scanned here; the planner scans it itself


# Below this many recipes one process parses them all: a pool's start-up costs more than it saves
POOL_MIN = 400
# A forked worker's inputs, set before the fork: the workers read them from the parent's memory
# (copy on write) instead of a pickled copy of every blob
_TASK: tuple[Git, str, list[tuple[str, str, bytes]], Wanted] | None = None


class _Uncached(Exception):
    """A worker needs a blob the parent did not preload: the parent scans that dataset itself."""


def _parsed(ds: str, raw: bytes) -> tuple[dict[str, Any] | None, bool | None]:
    """A worker's answer for one dataset. Anything that fails is None, done again by the parent,
    so the error, and which comes first, is the serial run's."""
    assert _TASK is not None
    git, commit, _, wanted = _TASK
    try:
        recipe = recipe_yaml(raw, "")
    except Exception:  # noqa: BLE001 - the parent parses it again and reports it
        return None, None
    slim = {k: recipe[k] for k in wanted.keep if k in recipe}
    if wanted.skip(ds):
        return slim, None

    def read(path: str) -> bytes:
        data = git.cached(commit, path)
        if data is None:
            raise _Uncached(path)
        return data

    try:
        return slim, bool(transform_files(read, ds, recipe, wanted.files) & wanted.changed)
    except Exception:  # noqa: BLE001 - a transform that does not parse: the parent's line
        return slim, None


def _work(span: tuple[int, int]) -> list[tuple[dict[str, Any] | None, bool | None]]:
    assert _TASK is not None
    return [_parsed(ds, raw) for ds, _, raw in _TASK[2][span[0]:span[1]]]


def _pooled(task: tuple[Git, str, list[tuple[str, str, bytes]], Wanted],
            cores: int) -> list[tuple[dict[str, Any] | None, bool | None]]:
    global _TASK
    size = -(-len(task[2]) // (cores * 4))  # a few chunks a worker: a slow chunk does not hold the rest
    _TASK = task  # before the fork (a worker the pool starts again also finds it)
    gc.freeze()  # the workers' collections skip the parent's objects: no copy-on-write of them
    try:
        pool = multiprocessing.get_context("fork").Pool(cores)
    finally:
        gc.unfreeze()
    try:
        return [d for chunk in pool.map(_work, [(i, i + size) for i in range(0, len(task[2]), size)])
                for d in chunk]
    finally:
        pool.close()  # the workers exit before the parent goes on (they hold copies of its pipes)
        pool.join()
        _TASK = None


def read_datasets(git: Git, commit: str, found: list[tuple[str, str]], wanted: Wanted) -> list[Dataset]:
    """Every (dataset, recipe path) parsed, in order, with its transform's scan when asked.

    Many are done across the cores by forked workers (YAML and the import scan are most of a 10k
    plan's CPU), each answering only what the planner reads; a recipe that fails is parsed again
    here, so the error, and which recipe's comes first, is the serial run's. One process leaves
    every scan to the planner, which scans only the datasets nothing closer touched."""
    items = [(ds, path, git.read(commit, path)) for ds, path in found]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if len(items) < POOL_MIN or cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        answers: list[tuple[dict[str, Any] | None, bool | None]] = [(None, None)] * len(items)
    else:
        answers = _pooled((git, commit, items, wanted), cores)
    out = []
    for (_, path, raw), (slim, loads) in zip(items, answers, strict=True):
        if slim is None:
            recipe = recipe_yaml(raw, path)
            slim = {k: recipe[k] for k in wanted.keep if k in recipe}
        out.append(Dataset(slim, loads))
    return out


def _module_candidates(name: str, roots: list[str]) -> list[str]:
    """Repo paths that `import name` could load, each package __init__ on the way included."""
    return [path for root in roots for path in _candidates_in(name, root)]


@functools.lru_cache(maxsize=65536)  # `datasets` and the repo root: the same for every dataset
def _candidates_in(name: str, root: str) -> tuple[str, ...]:
    parts = name.split(".")
    base = f"{root}/" if root else ""
    out: list[str] = []
    for i in range(1, len(parts) + 1):
        stem = base + "/".join(parts[:i])
        out += [f"{stem}.py", f"{stem}/__init__.py"]
    return tuple(out)


_BODIES = frozenset(("body", "orelse", "finalbody", "handlers", "cases"))
_FIELDS: dict[type[ast.AST], tuple[str, ...]] = {}  # node class -> its fields in _BODIES


def _bodies(cls: type[ast.AST]) -> tuple[str, ...]:
    """The fields of a statement (or except/case clause) that hold statements or clauses, in the
    class's field order: the walk visits what ast.walk visits of these, in its order."""
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = tuple(f for f in cls._fields if f in _BODIES)
    return fields


@functools.lru_cache(maxsize=4096)
def imports_of(source: bytes) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """(level, module, names) of every import in one module; raises SyntaxError. Cached on
    the bytes: a helper every transform imports is parsed once per plan, not once per dataset."""
    tree = ast.parse(source)
    if b"import" not in source and b"coding" not in source:  # UTF-8 (no PEP 263 cookie) and
        return ()  # no keyword: no import statement, so no walk
    found: list[tuple[int, str, tuple[str, ...]]] = []
    todo: deque[ast.AST] = deque([tree])
    while todo:  # ast.walk's order, but statements only: an expression never holds an import
        node = todo.popleft()
        if isinstance(node, ast.Import):
            found += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or "", tuple(alias.name for alias in node.names)))
        else:
            for field in _bodies(type(node)):
                todo.extend(getattr(node, field))
    return tuple(found)


def import_candidates(source: bytes, where: str, roots: list[str], here: str) -> list[str]:
    """Candidate repo paths for every import in one module (absolute and relative)."""
    try:
        imported = imports_of(source)
    except SyntaxError as exc:
        raise D4CError(f"{where}:{exc.lineno}: cannot parse Python ({exc.msg})") from None
    found: list[str] = []
    for level, mod, names in imported:
        if not level and not names:  # `import a.b`
            found += _module_candidates(mod, roots)
            continue
        if level:  # relative: resolve against this module's package folder
            pkg = "" if here == "." else here  # repo paths from ls-tree: plain string parents
            for _ in range(level - 1):
                pkg = posixpath.dirname(pkg)
            mod_roots = [pkg]
        else:
            mod_roots = roots
        for name in names:  # `from pkg import sub` may name a submodule
            found += _module_candidates(f"{mod}.{name}" if mod else name, mod_roots)
        if mod:
            found += _module_candidates(mod, mod_roots)
    return found


def transform_files(read: Callable[[str], bytes], dataset: str, recipe: dict[str, Any],
                    files: set[str]) -> set[str]:
    """The repo files a dataset's transform loads: the entry module and its imports, transitively,
    each module's bytes from `read(path)`.

    Imports resolve against the dataset folder, `datasets/` and the repo root, the
    places a transform can reach on its import path.
    """
    folder = f"datasets/{dataset}"
    entry = str((recipe.get("transform") or {}).get("python") or "").split(":")[0]
    if not entry:
        return set()
    roots = [folder, "datasets", ""]
    todo = [f"{folder}/{entry}"]
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen or path not in files:
            continue
        seen.add(path)
        here = path.rpartition("/")[0]  # ls-tree paths: no trailing or doubled `/`
        # only the repo's files: the others would be skipped when popped (the order is the same)
        todo += [c for c in import_candidates(read(path), path, roots, here) if c in files and c not in seen]
    return seen
