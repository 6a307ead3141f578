"""The plan's fast readers give what the straightforward ones give: its YAML loader (libyaml's
C parser, YAML 1.2 rules built once) against ruamel's own C loader, and its cached import scan
against the plain `ast` walk, on the project's own files and on tricky input."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from d4c import plan_inputs
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
]


def _load(loader: YAML, raw: bytes) -> object:
    try:
        return loader.load(raw)
    except (YAMLError, ValueError) as exc:  # the same failure counts as the same answer
        return ("error", type(exc).__name__)


def test_the_plans_yaml_loader_reads_every_document_as_ruamels_own_c_loader() -> None:
    stock = YAML(typ="safe")
    docs = [p.read_bytes() for p in sorted((REPO / "datasets").glob("*/recipe.yaml"))]
    docs += [p.read_bytes() for p in sorted((REPO / "tests" / "broken_recipes").glob("*.yaml"))]
    assert len(docs) > 10
    for raw in docs:  # == only; the alias bombs among the broken recipes: their kind only
        ours, theirs = _load(plan_inputs.LOADER, raw), _load(stock, raw)
        assert ours == theirs if b"&" not in raw else type(ours) is type(theirs), raw[:80]
    for raw in TRICKY:  # repr too: 1 and 1.0 and True are ==, but not the same value
        ours, theirs = _load(plan_inputs.LOADER, raw), _load(stock, raw)
        assert ours == theirs and repr(ours) == repr(theirs), raw[:80]
    assert plan_inputs.LOADER.load(TRICKY[1])["a"][:4] == [1, 31, 10, 15]  # 1.2: 010 is ten, 0o17 octal
    assert plan_inputs.LOADER.load(TRICKY[0]) == {"a": "yes", "b": 10}


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


def test_many_recipes_parse_across_processes_as_one_process_parses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    pools: list[str] = []
    get_context = plan_inputs.multiprocessing.get_context

    def spy(method: str) -> Any:  # the pool is really used: the fork context is asked for
        pools.append(method)
        return get_context(method)

    monkeypatch.setattr(plan_inputs.multiprocessing, "get_context", spy)
    docs = [d for d in TRICKY[1:] if isinstance(_load(plan_inputs.LOADER, d), dict)]  # after an `id:` line
    items = [(f"datasets/d{i}/recipe.yaml", b"id: d%d\n" % i + docs[i % len(docs)]) for i in range(plan_inputs.POOL_MIN + 100)]
    serial = [plan_inputs.recipe_yaml(raw, path) for path, raw in items]
    assert repr(plan_inputs.parse_recipes(items)) == repr(serial) and pools == ["fork"]
    bad = {7: b"a: [", plan_inputs.POOL_MIN: b"- a list\n"}  # the first in order is the one reported
    items = [(p, bad.get(i, raw)) for i, (p, raw) in enumerate(items)]
    with pytest.raises(D4CError, match=r"^datasets/d7/recipe.yaml: not valid YAML"):
        plan_inputs.parse_recipes(items)
    with pytest.raises(D4CError, match=rf"^datasets/d{plan_inputs.POOL_MIN}/recipe.yaml: a recipe must be a mapping"):
        plan_inputs.parse_recipes(items[8:])
    assert len(pools) == 3


def test_relative_imports_resolve_to_the_package_folders_above_the_module() -> None:
    src = b"from . import a\nfrom .. import b\nfrom ... import c\nfrom .... import d\n"
    cands = plan_inputs.import_candidates(src, "datasets/x/t.py", [""], "datasets/x")
    assert {"datasets/x/a.py", "datasets/b.py", "c.py", "d.py"} <= set(cands)
    assert "d.py" in plan_inputs.import_candidates(b"from .. import d\n", "t.py", [""], "")
