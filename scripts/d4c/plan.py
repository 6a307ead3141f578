"""Which datasets a git change touches: the job matrix for CI.

Rules (docs/workflows.md):
- a file under `datasets/<id>/` touches dataset `<id>`;
- `scripts/`, `docker/`, `schemas/`, `pyproject.toml`, `requirements*.lock` touch every dataset;
- a changed repo file that a dataset's transform imports (directly or transitively,
  resolved with `ast`) touches that dataset: shared helpers such as `datasets/_shared/`;
- a dataset whose recipe is gone at head is reported as deleted; deleting one that has
  any release record is an error, because releases are permanent;
- `release` lists the datasets whose recipe version has no `releases/<id>/<version>.json`.

Everything is read from git objects (never the work tree), so `--head` may be any ref.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import multiprocessing
import os
import posixpath
import re
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.resolver import VersionedResolver

from d4c import fanout, model, semver
from d4c.errors import D4CError

GLOBAL_PREFIXES = ("scripts/", "docker/", "schemas/")
GLOBAL_FILES = re.compile(r"^(pyproject\.toml|requirements[^/]*\.lock)$")
NULL_SHA = re.compile(r"^0{40}$")  # GitHub's `before` on a branch's first push
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree
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


class _Git:
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


class _Resolver12(VersionedResolver):
    """ruamel's YAML 1.2 resolver without its per-scalar costs: libyaml's C parser never reports
    a `%YAML` directive to ruamel, so every document already resolved as 1.2; the rules are
    built once per process instead of once per document (measured: 25-40% less YAML time)."""

    _rules: ClassVar[dict[Any, Any]] = {}

    @property
    def processing_version(self) -> Any:
        return (1, 2)

    @property
    def versioned_resolver(self) -> Any:
        if not _Resolver12._rules:
            _Resolver12._rules.update(super().versioned_resolver)
        return _Resolver12._rules


_LOADER = YAML(typ="safe")  # libyaml's C parser (ruamel.yaml.clib): the plan reads every recipe
_LOADER.Resolver = _Resolver12


def _yaml(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = _LOADER.load(raw)
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
            out.append(_yaml(raw, ""))
        except D4CError:
            out.append(None)
    return out


def _recipes(items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Every (path, bytes) recipe parsed, in order. Many are parsed across the cores by forked
    workers (YAML is half of a 10k plan's CPU); a recipe that fails is parsed again here, so the
    error, and which recipe's comes first, is the serial run's."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if len(items) < POOL_MIN or cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_yaml(raw, path) for path, raw in items]
    size = -(-len(items) // (cores * 4))  # a few chunks a worker: a slow chunk does not hold the rest
    chunks = [[raw for _, raw in items[i:i + size]] for i in range(0, len(items), size)]
    pool = multiprocessing.get_context("fork").Pool(cores)
    try:
        parsed = [d for chunk in pool.map(_load_chunk, chunks) for d in chunk]
    finally:
        pool.close()  # the workers exit before the parent goes on (they hold copies of its pipes)
        pool.join()
    return [d if d is not None else _yaml(raw, path) for (path, raw), d in zip(items, parsed, strict=True)]


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
def _imported(source: bytes) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
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


def _imports(source: bytes, where: str, roots: list[str], here: str) -> list[str]:
    """Candidate repo paths for every import in one module (absolute and relative)."""
    try:
        imported = _imported(source)
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


def transform_files(git: _Git, commit: str, dataset: str, recipe: dict[str, Any],
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
        todo += [c for c in _imports(git.read(commit, path), path, roots, here) if c not in seen]
    return seen


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
    git = _Git(root)
    try:
        return _plan(git, base, head)
    finally:
        git.close()


def commit_of(root: Path, ref: str) -> str:
    """The commit a ref names (a plan's head, for manifests that pin it)."""
    return _Git(root).commit(ref)


def _plan(git: _Git, base: str, head: str) -> Plan:
    base_c = None if NULL_SHA.match(base) else git.commit(base)
    head_c = git.commit(head)
    changes = git.changes(base_c, head_c)
    base_files, head_files = git.files(base_c) if base_c else set(), git.files(head_c)
    git.preload(head_c, sorted(p for p in head_files if p.startswith("datasets/")
                               and (p.endswith(".py") or _RECIPE.match(p))))
    found = [(m.group(1), p) for p in sorted(head_files) if (m := _RECIPE.match(p))]
    loaded = _recipes([(p, git.read(head_c, p)) for _, p in found])
    recipes = {ds: r for (ds, _), r in zip(found, loaded, strict=True)}
    old_ids = {m.group(1) for p in base_files if (m := _RECIPE.match(p))}

    changed = {path for _, path in changes}
    deleted = sorted(old_ids - set(recipes))
    for ds in deleted:
        records = _released(base_files | head_files, ds)
        if records:
            raise D4CError(
                f"datasets/{ds}: a published dataset was deleted ({len(records)} release "
                f"record(s), e.g. {records[0]})",
                hint="releases are permanent; restore the folder and mark the dataset deprecated",
            )
    for status, path in changes:  # releases are permanent: a record may never go away
        if status == "D" and path.startswith("releases/") and path.endswith(".json"):
            raise D4CError(
                f"{path}: a release record was deleted",
                hint="releases are permanent; restore the file (deprecate a version instead)",
            )

    touch_all = any(p.startswith(GLOBAL_PREFIXES) or GLOBAL_FILES.match(p) for p in changed)
    touched: set[str] = set()
    for ds, recipe in recipes.items():
        own = touch_all or any(p.startswith(f"datasets/{ds}/") for p in changed)
        # lazily: parsing imports is only needed when nothing closer touched the dataset
        if own or transform_files(git, head_c, ds, recipe, head_files) & changed:
            touched.add(ds)

    release = sorted(
        ds for ds, r in recipes.items() if f"releases/{ds}/{r.get('version')}.json" not in head_files
    )
    ordered = sorted(touched)
    matrix, release_matrix = [_row(ds, recipes[ds]) for ds in ordered], [_row(ds, recipes[ds]) for ds in release]
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
