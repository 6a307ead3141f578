"""The plan's fast readers give what the straightforward ones give: its YAML loader (libyaml's
C parser, YAML 1.2 rules built once) against ruamel's own C loader, and its cached import scan
against the plain `ast` walk, on the project's own files and on tricky input."""
from __future__ import annotations

import ast
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from d4c import plan, plan_inputs
from d4c.errors import D4CError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

REPO = Path(__file__).resolve().parents[1]
TRICKY = [
    b"%YAML 1.1\n---\na: yes\nb: 010\n",  # libyaml's parser hides the directive: 1.2 rules
    b"a: [1, 0x1f, 010, 0o17, 1e5, .5, -.inf, true, True, yes, no, on, null, ~, '', 1_000, 0b101, +1]\nt: 12:30\n",
    b"d: [2020-01-01, 2020-01-01T10:00:00Z, '2020-01-01']\nv: 1.0\nw: 1.0.0\n",
    b"a: &x {b: 1}\nc: {<<: *x, d: 2}\n",
    b"sha256: 0000000000000000000000000000000000000000000000000000000000000009\n",
    b"a: 1\nb: {c: 1, c: 2}\n",  # a duplicate key is refused
]


def _load(load: Callable[[bytes], object], raw: bytes) -> object:
    try:
        return load(raw)
    except (YAMLError, ValueError) as exc:  # the same failure counts as the same answer
        return ("error", type(exc).__name__)


def test_the_plans_yaml_loader_reads_every_document_as_ruamels_own_c_loader() -> None:
    stock, fast = YAML(typ="safe").load, plan_inputs.load_yaml
    docs = [p.read_bytes() for p in sorted((REPO / "datasets").glob("*/recipe.yaml"))]
    docs += [p.read_bytes() for p in sorted((REPO / "tests" / "broken_recipes").glob("*.yaml"))]
    assert len(docs) > 10
    for raw in docs:  # == only; the alias bombs among the broken recipes: their kind only
        ours, theirs = _load(fast, raw), _load(stock, raw)
        assert ours == theirs if b"&" not in raw else type(ours) is type(theirs), raw[:80]
    for raw in TRICKY:  # repr too: 1 and 1.0 and True are ==, but not the same value
        ours, theirs = _load(fast, raw), _load(stock, raw)
        assert ours == theirs and repr(ours) == repr(theirs), raw[:80]
    assert fast(TRICKY[1])["a"][:4] == [1, 31, 10, 15]  # 1.2: 010 is ten, 0o17 octal
    assert fast(TRICKY[0]) == {"a": "yes", "b": 10}
    assert _load(fast, TRICKY[-1]) == ("error", "DuplicateKeyError")


def _walked(source: bytes) -> list[tuple[int, str, tuple[str, ...]]]:
    out: list[tuple[int, str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(0, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    return out


def test_the_cached_import_scan_finds_what_a_plain_walk_finds() -> None:
    modules = [p.read_bytes() for p in sorted((REPO / "datasets").glob("*/*.py"))]
    modules += [b"X = 1\n", b"def f():\n    import os.path as p\n    from .. import up\n",
                # PEP 263: in UTF-7 the keyword need not appear as bytes; the walk must still run
                b"# coding: utf-7\n+AGk-mport os\n"]
    for source in modules:
        assert list(plan_inputs.imports_of(source)) == _walked(source), source[:60]
    assert plan_inputs.imports_of(modules[-1]) == ((0, "os", ()),)
    cands = plan_inputs.import_candidates(b"from . import local\nimport _shared.geo\n", "datasets/x/t.py",
                                          ["datasets/x", "datasets", ""], "datasets/x")
    assert "datasets/x/local.py" in cands and "datasets/_shared/geo.py" in cands


def test_every_broken_recipe_is_one_line_to_the_plan() -> None:
    for path in sorted((REPO / "tests" / "broken_recipes").glob("*.yaml")):
        try:
            plan_inputs.recipe_yaml(path.read_bytes(), path.name)
        except D4CError as exc:
            assert exc.line().startswith(path.name), exc.line()


def test_a_module_that_does_not_parse_is_one_line_each_time_even_without_imports() -> None:
    for _ in range(2):  # a failure is not cached away
        with pytest.raises(D4CError, match=r"^datasets/x/t.py:1: cannot parse Python"):
            plan_inputs.import_candidates(b"def (:\n", "datasets/x/t.py", [""], "datasets/x")


POOL_MIN = plan_inputs.POOL_MIN  # before a test sets it
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
ENV = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def _commit(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "c"], cwd=root, check=True, env=ENV)


def _many(root: Path) -> list[str]:
    """POOL_MIN + 100 datasets with the mappings above; their transforms import a shared
    helper, each seventh one another, each tenth one a module at the repo root (a blob the plan
    does not preload), which imports another."""
    docs = [d for d in TRICKY[1:] if isinstance(_load(plan_inputs.load_yaml, d), dict)]
    ids = [f"d{i:04d}" for i in range(POOL_MIN + 100)]
    files = {"datasets/_shared/__init__.py": b"", "datasets/_shared/geo.py": b"X = 1\n",
             "datasets/_shared/other.py": b"def f(): pass\n", "rootmod.py": b"import deep\n", "deep.py": b"Z = 1\n"}
    for i, ds in enumerate(ids):
        files[f"datasets/{ds}/recipe.yaml"] = (b"id: %s\nversion: 1.0.0\ntransform:\n  python: t.py:build\n"
                                              % ds.encode()) + docs[i % len(docs)]
        files[f"datasets/{ds}/t.py"] = (b"from _shared import geo\n" + (b"import rootmod\n" if i % 10 == 0 else b"")
                                        + (b"from _shared.other import f\n" if i % 7 == 0 else b""))
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    _commit(root, files)
    return ids


def _both(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The plan (or its error line) of HEAD~1...HEAD, forked workers against one process."""
    out = []
    for pool_min in (POOL_MIN, 10**9):
        monkeypatch.setattr(plan_inputs, "POOL_MIN", pool_min)
        try:
            out.append(plan.dumps(plan.plan(root, "HEAD~1")))
        except D4CError as exc:
            out.append(exc.line())
    return out[0], out[1]


def test_many_datasets_plan_across_processes_as_one_process_plans_them(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pools: list[str] = []
    get_context = plan_inputs.multiprocessing.get_context

    def spy(method: str) -> Any:  # the pool is really used: the fork context is asked for
        pools.append(method)
        return get_context(method)

    monkeypatch.setattr(plan_inputs.multiprocessing, "get_context", spy)
    root = tmp_path / "repo"
    root.mkdir()
    ids = _many(root)
    _commit(root, {"deep.py": b"Z = 2\n", "datasets/_shared/other.py": b"def f(): return 1\n"})
    pooled, serial = _both(root, monkeypatch)
    assert pooled == serial and pools == ["fork"]
    # through a helper, or through a module the workers were not given (the plan scans those)
    assert json.loads(pooled)["datasets"] == sorted({*ids[::7], *ids[::10]})
    # transforms that do not parse: the first in order among those the plan must scan is the line
    # (ids[3]'s own folder changed: it is touched without a scan)
    _commit(root, {f"datasets/{ids[i]}/t.py": b"def (:\n" for i in (3, 5, len(ids) - 1)})
    _commit(root, {"datasets/_shared/geo.py": b"X = 4\n", f"datasets/{ids[3]}/notes.md": b"x\n"})
    pooled, serial = _both(root, monkeypatch)
    assert pooled == serial and pooled.startswith(f"datasets/{ids[5]}/t.py:1: cannot parse Python")
    # recipes that fail (before any transform): the first in order is the line
    _commit(root, {f"datasets/{ids[7]}/recipe.yaml": b"a: [", f"datasets/{ids[-2]}/recipe.yaml": b"- a list\n"})
    pooled, serial = _both(root, monkeypatch)
    assert pooled == serial and pooled.startswith(f"datasets/{ids[7]}/recipe.yaml: not valid YAML")
    assert pools == ["fork"] * 3


def test_relative_imports_resolve_to_the_package_folders_above_the_module() -> None:
    src = b"from . import a\nfrom .. import b\nfrom ... import c\nfrom .... import d\n"
    cands = plan_inputs.import_candidates(src, "datasets/x/t.py", [""], "datasets/x")
    assert {"datasets/x/a.py", "datasets/b.py", "c.py", "d.py"} <= set(cands)
    assert "d.py" in plan_inputs.import_candidates(b"from .. import d\n", "t.py", [""], "")
