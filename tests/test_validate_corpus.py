"""The broken-recipe corpus: each file in tests/broken_recipes/ must give exactly the
findings its header announces (`# expect: ID line N`, optionally followed by text the
finding's message must contain), exit 1, and no traceback.

Header directives set up the dataset folder the recipe is validated in:
`# folder: NAME` (default ca_test_broken), `# transform: SOURCE | none` (default a
`build(ctx)`), `# symlink: LINK -> TARGET`, `# release: VERSION` (a release record).
Every folder also holds `sources/data.csv` and the repo has `docker/Dockerfile`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from d4c.cli import main

CORPUS = Path(__file__).parent / "broken_recipes"
CASES = sorted(CORPUS.glob("*.yaml"))
_DIRECTIVE = re.compile(rb"^# (expect|folder|transform|symlink|release): (.*)$")


def directives(raw: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in raw.split(b"\n"):
        if not line.startswith(b"#"):
            break
        m = _DIRECTIVE.match(line)
        if m:
            found.setdefault(m.group(1).decode(), []).append(m.group(2).decode())
    return found


Expect = tuple[str, int, str]  # lint id, line, text the message contains ("" for any)


def stage(case: Path, root: Path) -> tuple[Path, set[Expect]]:
    """Lay the case out as <root>/datasets/<folder>/recipe.yaml; return it and the expectations."""
    raw = case.read_bytes()
    d = directives(raw)
    folder = root / "datasets" / d.get("folder", ["ca_test_broken"])[0]
    (folder / "sources").mkdir(parents=True)
    (folder / "sources" / "data.csv").write_bytes(b"a,b\n1,2\n")
    (root / "docker").mkdir(exist_ok=True)
    (root / "docker" / "Dockerfile").write_text("FROM scratch\n")
    transform = d.get("transform", ["def build(ctx):\n    return None"])[0]
    if transform != "none":
        (folder / "transform.py").write_text(transform + "\n")
    for link in d.get("symlink", []):
        name, target = (part.strip() for part in link.split("->"))
        (folder / name).symlink_to(target)
    for version in d.get("release", []):
        record = root / "releases" / folder.name / f"{version}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"record_version": 1, "id": folder.name, "version": version}))
    (folder / "recipe.yaml").write_bytes(raw)
    expects = set()
    for e in d.get("expect", []):
        m = re.fullmatch(r"(D4C\d{3}) line (\d+)(?: (.+))?", e.strip())
        assert m, f"{case.name}: bad expect directive {e!r}"
        expects.add((m.group(1), int(m.group(2)), m.group(3) or ""))
    assert expects, f"{case.name} announces no expected finding"
    return folder / "recipe.yaml", expects


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    ids = {lint for case in CASES for lint, _ in stage_expectations(case)}
    assert len(ids) >= 30, sorted(ids)


def stage_expectations(case: Path) -> set[tuple[str, int]]:
    return {(m.group(1), int(m.group(2))) for m in
            re.finditer(r"^# expect: (D4C\d{3}) line (\d+)(?: .+)?$", case.read_text("utf-8", "replace"), re.MULTILINE)}


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_recipe(case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, expects = stage(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    code = main(["validate", str(recipe.relative_to(tmp_path))])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    got: dict[tuple[str, int], str] = {}
    for line in out.splitlines():
        m = re.fullmatch(r"datasets/[^:]+/recipe\.yaml:(\d+):(\d+): (D4C\d{3}) (.+)", line)
        assert m, f"not a path:line:col: ID finding: {line!r}"
        got[(m.group(3), int(m.group(1)))] = got.get((m.group(3), int(m.group(1))), "") + m.group(4)
    assert set(got) == {(lint, n) for lint, n, _ in expects}, out
    for lint, n, text in expects:
        assert text in got[(lint, n)], (lint, n, text, out)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written
