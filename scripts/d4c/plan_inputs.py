"""What `d4c plan` reads from git: blobs by id (one `ls-tree`, batched `cat-file`), recipes
parsed as YAML 1.2 (across forked workers when there are many) and the repo files a
transform imports (an `ast` scan cached by content). d4c.plan decides from these.
"""
from __future__ import annotations

import ast
import functools
import multiprocessing
import os
import posixpath
import subprocess
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.resolver import VersionedResolver

from d4c.errors import D4CError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree


class Git:
    """Read-only access to one repository's objects."""

    def __init__(self, root: Path):
        self.root = root
        self._batch: subprocess.Popen[bytes] | None = None
        self._blobs: dict[str, bytes] = {}
        # commit -> path -> blob id, from the one `ls-tree` per commit: `git cat-file` finds a
        # blob by id at once, while `<commit>:<path>` walks the tree for every spec (quadratic
        # over datasets/: 65 s for 30k blobs against 0.2 s by id).
        self._oids: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        if self._batch is not None:
            self._batch.communicate()
            self._batch = None

    def run(self, *args: str) -> bytes:
        proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise D4CError(f"git {' '.join(args[:2])} failed: {err[-1] if err else proc.returncode}")
        return proc.stdout

    def commit(self, ref: str) -> str:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            cwd=self.root, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise D4CError(
                f"unknown git ref {ref!r} in {self.root}",
                hint="fetch enough history (actions/checkout with fetch-depth: 0) or check the ref",
            )
        return proc.stdout.strip()

    def files(self, commit: str) -> set[str]:
        if commit not in self._oids:
            oids: dict[str, str] = {}
            for entry in self.run("ls-tree", "-r", "-z", commit).decode().split("\0"):
                meta, _, path = entry.partition("\t")
                fields = meta.split()
                if len(fields) == 3 and fields[1] == "blob":
                    oids[path] = fields[2]
            self._oids[commit] = oids
        return set(self._oids[commit])

    def _spec(self, commit: str, path: str) -> str:
        """What to ask `git cat-file` for: the blob id when the tree was listed."""
        return self._oids.get(commit, {}).get(path) or f"{commit}:{path}"

    def read(self, commit: str, path: str) -> bytes:
        """One blob, through a single `git cat-file --batch` (one process, not one per file)."""
        spec = f"{commit}:{path}"
        if spec in self._blobs:
            return self._blobs[spec]
        if "\n" in spec:  # the batch protocol is line-based
            return self.run("cat-file", "blob", spec)
        ask = self._spec(commit, path)
        if self._batch is None:
            self._batch = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.root,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._batch.stdin is not None and self._batch.stdout is not None
        self._batch.stdin.write(ask.encode() + b"\n")
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise D4CError(f"git cannot read {spec} ({b' '.join(header[1:]).decode() or 'no answer'})")
        data = self._batch.stdout.read(int(header[2]))
        self._batch.stdout.read(1)  # the newline after each object
        self._blobs[spec] = data
        return data

    def preload(self, commit: str, paths: list[str]) -> None:
        """Read many blobs with one `git cat-file --batch` run (recipes, transforms, helpers)."""
        specs = [f"{commit}:{p}" for p in paths if "\n" not in p]
        if not specs:
            return
        asks = [self._spec(commit, p) for p in paths if "\n" not in p]
        out = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, check=False,
                             input="".join(f"{a}\n" for a in asks).encode(), capture_output=True).stdout
        pos = 0
        for spec in specs:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) == 3 and header[1] == b"blob":
                size = int(header[2])
                self._blobs[spec] = out[pos:pos + size]
                pos += size + 1

    def changes(self, base: str | None, head: str) -> list[tuple[str, str]]:
        """(status letter, path) for base...head (None: from nothing); renames are delete + add."""
        span = [f"{base}...{head}"] if base else [EMPTY_TREE, head]
        out = self.run("diff", "--name-status", "-z", "--no-renames", *span)
        parts = out.decode().split("\0")
        return [(parts[i][:1], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]


class Resolver12(VersionedResolver):
    """ruamel's YAML 1.2 resolver without its per-scalar costs: libyaml's C parser never reports
    a `%YAML` directive to ruamel, so every document already resolved as 1.2; the rules are
    built once per process instead of once per document (measured: 25-40% less YAML time)."""

    _rules: ClassVar[dict[Any, Any]] = {}

    @property
    def processing_version(self) -> Any:
        return (1, 2)

    @property
    def versioned_resolver(self) -> Any:
        if not Resolver12._rules:
            Resolver12._rules.update(super().versioned_resolver)
        return Resolver12._rules


LOADER = YAML(typ="safe")  # libyaml's C parser (ruamel.yaml.clib): the plan reads every recipe
LOADER.Resolver = Resolver12


def recipe_yaml(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = LOADER.load(raw)
    except (YAMLError, ValueError):  # ValueError: an integer past Python's 4,300 digits
        raise D4CError(f"{where}: not valid YAML", hint="run `d4c validate`") from None
    if not isinstance(data, dict):
        raise D4CError(f"{where}: a recipe must be a mapping", hint="run `d4c validate`")
    return data


# Below this many recipes one process parses them all: a pool's start-up costs more than it saves
POOL_MIN = 400


def _load_chunk(raws: list[bytes]) -> list[dict[str, Any] | None]:
    """A pool worker's part: each recipe as a plain dict, None for one the parent must report."""
    out: list[dict[str, Any] | None] = []
    for raw in raws:
        try:
            out.append(recipe_yaml(raw, ""))
        except D4CError:
            out.append(None)
    return out


def parse_recipes(items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Every (path, bytes) recipe parsed, in order. Many are parsed across the cores by forked
    workers (YAML is half of a 10k plan's CPU); a recipe that fails is parsed again here, so the
    error, and which recipe's comes first, is the serial run's."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if len(items) < POOL_MIN or cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [recipe_yaml(raw, path) for path, raw in items]
    size = -(-len(items) // (cores * 4))  # a few chunks a worker: a slow chunk does not hold the rest
    chunks = [[raw for _, raw in items[i:i + size]] for i in range(0, len(items), size)]
    pool = multiprocessing.get_context("fork").Pool(cores)
    try:
        parsed = [d for chunk in pool.map(_load_chunk, chunks) for d in chunk]
    finally:
        pool.close()  # the workers exit before the parent goes on (they hold copies of its pipes)
        pool.join()
    return [d if d is not None else recipe_yaml(raw, path) for (path, raw), d in zip(items, parsed, strict=True)]


def _module_candidates(name: str, roots: list[str]) -> list[str]:
    """Repo paths that `import name` could load, each package __init__ on the way included."""
    parts = name.split(".")
    out: list[str] = []
    for root in roots:
        base = f"{root}/" if root else ""
        for i in range(1, len(parts) + 1):
            stem = base + "/".join(parts[:i])
            out += [f"{stem}.py", f"{stem}/__init__.py"]
    return out


_HOLDS_STATEMENTS = (ast.stmt, ast.excepthandler, ast.match_case)


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
            todo.extend(c for c in ast.iter_child_nodes(node) if isinstance(c, _HOLDS_STATEMENTS))
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


def transform_files(git: Git, commit: str, dataset: str, recipe: dict[str, Any],
                    files: set[str]) -> set[str]:
    """The repo files a dataset's transform loads: the entry module and its imports, transitively.

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
        here = posixpath.dirname(path)
        todo += [c for c in import_candidates(git.read(commit, path), path, roots, here) if c not in seen]
    return seen
