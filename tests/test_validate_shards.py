"""D4C608: `d4c validate` refuses the shard specs every build refuses (the build's own checks)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from d4c.validate import validate_paths

REPO = Path(__file__).resolve().parent.parent
GRID = REPO / "datasets" / "ca_d4c_capital-distance_grid"  # shards: {by: tile, level: 4, max: 4}
SPEC = "shards:\n  by: tile\n  level: 4\n  max: 4\nreduce:\n  method: mosaic\n"


def grid_copy(root: Path, old: str, new: str) -> Path:
    dst = root / "datasets" / GRID.name
    shutil.copytree(GRID, dst)
    text = (GRID / "recipe.yaml").read_text(encoding="utf-8")
    assert old in text
    (dst / "recipe.yaml").write_text(text.replace(old, new), encoding="utf-8")
    shutil.copytree(REPO / "docker", root / "docker")
    return dst


@pytest.mark.parametrize(("old", "new", "says"), [
    ("spatial:\n  bbox: [-141.0, 41.5, -52.0, 83.5]\n", "", "`shards: {by: tile}` needs `spatial.bbox`"),
    ("  level: 4\n", "  level: 12\n", "level 12 gives 1369914 tiles over spatial.bbox, more than 65536"),
    ("  method: mosaic\n", "  method: concat\n", "`reduce: {method: concat}` cannot merge the output(s) distance (cog)"),
    ("  - name: distance\n    format: cog\n", "  - name: distance\n    format: pmtiles\n",
     "`reduce: {method: mosaic}` cannot merge the output(s) distance (pmtiles)"),
    ("  by: tile\n", "  by: source_file\n", "`shards.level` is for `by: tile` only; this recipe partitions by source_file"),
    ("  method: mosaic\n", "  method: by_format\n", None),
])
def test_shard_spec_refused_at_review(tmp_path: Path, old: str, new: str, says: str | None) -> None:
    assert SPEC in (GRID / "recipe.yaml").read_text(encoding="utf-8")  # the spec these edits change
    found = validate_paths([grid_copy(tmp_path, old, new)])
    shards = [f for f in found if f.lint == "D4C608"]
    assert [f.lint for f in found] == (["D4C608"] if says else []), found
    if says:
        assert says in shards[0].message and "(hint" not in shards[0].message
        text = (tmp_path / "datasets" / GRID.name / "recipe.yaml").read_text(encoding="utf-8")
        assert text.splitlines()[shards[0].line - 1].lstrip().startswith(("shards:", "level:"))


def test_schema_errors_first(tmp_path: Path) -> None:
    found = validate_paths([grid_copy(tmp_path, "  level: 4\n", "  level: 25\n")])
    assert [f.lint for f in found] == ["D4C201"]


def test_shards_without_reduce_is_reported_at_shards(tmp_path: Path) -> None:
    found = validate_paths([grid_copy(tmp_path, "reduce:\n  method: mosaic\n", "")])
    text = (tmp_path / "datasets" / GRID.name / "recipe.yaml").read_text(encoding="utf-8")
    # was `recipe`: 'reduce' is a dependency of 'shards', at 1:1
    assert [(f.lint, f.message) for f in found] == [("D4C202", "missing `reduce`, which `shards` needs")]
    assert (found[0].line, found[0].col) == (text.splitlines().index("shards:") + 1, 1)
