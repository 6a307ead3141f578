"""shard.json is untrusted input to the reduce: schemas/shard-manifest.schema.json types every
field before the reduce reads one, so a hand-edited manifest fails in one line (exit 1), not
with a TypeError (exit 3)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from d4c import schemas
from d4c.build import shards
from d4c.cli import main
from d4c.errors import D4CError
from d4c.recipe import load

REPO = Path(__file__).resolve().parent.parent
DEMO = "ca_d4c_capital-distance_grid"  # shards: {by: tile, level: 4, max: 4}


def honest() -> dict[str, Any]:
    """What the shard builder writes (shards.shard_manifest), with one output entry as it lists them."""
    rec = load(REPO / "datasets" / DEMO / "recipe.yaml")
    tiles = shards.tile_runs(rec, 4)[0]
    doc = shards.shard_manifest(rec, REPO, None, (1, 4, tiles), [], rec.params, 0, False,
                                {"commit": None, "tree": None, "dirty": True})
    doc["outputs"] = [{"name": "distance", "file": f"{DEMO}_v1.0.0_distance.part-0001.tif", "format": "cog",
                       "size": 10, "sha256": "0" * 64, "rows": None}]
    doc["inputs"] = [{"sha256": "1" * 64, "source": "provinces-territories", "member": None}]
    return doc


@pytest.mark.parametrize(("path", "value", "says"), [
    (("shard",), "x", "at shard: 'x' is not of type 'object'"),
    (("outputs",), None, "at outputs: None is not of type 'array'"),
    (("shard", "index"), "1", "at shard/index: '1' is not of type 'integer'"),
    (("shard", "tiles"), [["a", 1, 2]], "at shard/tiles/0/0: 'a' is not of type 'integer'"),
    (("dataset", "id"), 5, "at dataset/id: 5 is not of type 'string'"),
    (("outputs", 0, "file"), [1], "at outputs/0/file: [1] is not of type 'string'"),
    (("inputs", 0, "sha256"), "../x", "at inputs/0/sha256: '../x' does not match"),
])
def test_a_hand_edited_shard_manifest_fails_in_one_line(tmp_path: Path, path: tuple[Any, ...], value: Any,
                                                        says: str) -> None:
    good = honest()
    schemas.check("shard-manifest", good, what="the honest manifest")
    doc = copy.deepcopy(good)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / "shard.json").write_text(json.dumps(doc))
    with pytest.raises(D4CError, match="shard-manifest.schema.json " + says.replace("[", r"\[").replace("(", r"\(")):
        shards.read_shard_manifest(tmp_path / "shard.json")


def test_the_reduce_refuses_it_with_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("D4C_REPO", str(REPO))
    folder = tmp_path / "s1"
    folder.mkdir()
    doc = honest()
    doc["shard"] = "x"  # was: TypeError, a crash log and exit 3
    (folder / "shard.json").write_text(json.dumps(doc))
    assert main(["build", DEMO, "--reduce", str(folder), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at shard: 'x' is not of type 'object'" in err and "bug" not in err
