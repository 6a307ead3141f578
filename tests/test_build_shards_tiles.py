"""`shards: {by: tile}` and the COG mosaic: the tile partition (checked against morecantile),
the reduce's checks of tiles and parts, and the raster demo ca_d4c_capital-distance_grid
built sharded in parallel processes, whole, and shard by shard in reverse order: the same COG
bytes, which are those the unsharded writer makes of the whole grid (real sandboxed builds,
read back with rasterio)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from d4c.build import geo_writers, reduce_cog, shards, tiles
from d4c.cli import main
from d4c.errors import D4CError
from d4c.recipe import load

DEMO = "ca_d4c_capital-distance_grid"
CANADA = [-141.0, 41.5, -52.0, 83.5]


def test_tiles_agree_with_morecantile() -> None:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    for bbox, z in ((CANADA, 4), (CANADA, 7), ([-90.0, 0.0, 0.0, 66.51326044311186], 2), ([-180, -85, 180, 85], 3),
                    ([-75.7, 45.4, -75.6, 45.5], 12)):  # the third: edges on tile edges, a float's noise off
        ours = tiles.covering(bbox, z)
        assert sorted(ours) == sorted((t.z, t.x, t.y) for t in tms.tiles(bbox[0], bbox[1], bbox[2], bbox[3], [z])), (bbox, z)
        ids = [tiles.tile_id(t) for t in ours]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # PMTiles tile-id order
        for z_, x, y in ours[:8]:
            assert tiles.bounds((z_, x, y)) == pytest.approx(tuple(tms.bounds(morecantile.Tile(x, y, z_))), abs=1e-9)
    with pytest.raises(ValueError, match="more than 65536"):
        tiles.covering(CANADA, 12)


def test_windows_split_a_grid_by_cell_centres() -> None:
    grid = Affine(0.1, 0.0, -141.0, 0.0, -0.1, 83.5)  # the raster demo's
    cover = np.zeros((420, 890), dtype="int64")
    for run in tiles.cut(tiles.covering(CANADA, 4), 4):
        for r, c, h, w in tiles.windows(run, grid, 890, 420):
            cover[r:r + h, c:c + w] += 1
            assert tiles.held(run, grid @ Affine.translation(c, r), w, h)
            assert not tiles.held([t for t in run if t != run[0]] or [(4, 0, 0)], grid, 890, 420)
    assert (cover == 1).all()  # every cell in one window of one shard
    tiles.check_inside(CANADA, grid, 890, 420)
    with pytest.raises(ValueError, match=r"beyond spatial.bbox \[-141.0, 41.5, -52.0, 83.5\]"):
        tiles.check_inside(CANADA, grid, 891, 420)


def _recipe(tmp: Path, spec: str, sources: str = "", spatial: str = f"spatial:\n  bbox: {CANADA}\n") -> Path:
    sources = sources or f"  - {{name: a, path: a.csv, sha256: '{'a' * 64}', size: 1}}\n"
    path = tmp / "recipe.yaml"
    path.write_text(f"id: ca_test_t\nversion: 1.0.0\n{spatial}sources:\n{sources}transform:\n  python: t.py:build\n"
                    f"shards:\n{spec}reduce:\n  method: mosaic\noutputs:\n  - name: d\n    format: cog\n",
                    encoding="utf-8")
    return path


def test_the_tile_partition_is_a_function_of_the_spec_and_bbox(tmp_path: Path) -> None:
    rec = load(_recipe(tmp_path, "  by: tile\n  level: 4\n  max: 4\n"))
    runs = shards.tile_runs(rec, 4)
    assert [len(r) for r in runs] == [7, 8, 7, 8]  # 30 tiles over Canada at zoom 4, contiguous runs
    assert [t for r in runs for t in r] == tiles.covering(CANADA, 4)
    other = f"  - {{name: b, path: b.csv, sha256: '{'b' * 64}', size: 2}}\n  - {{name: a, path: a.csv, sha256: '{'c' * 64}', size: 1}}\n"
    assert shards.tile_runs(load(_recipe(tmp_path, "  by: tile\n  level: 4\n  max: 4\n", other)), 4) == runs
    assert shards.needed_sources(load(_recipe(tmp_path, "  by: tile\n  level: 4\n  max: 4\n", other)), 3, 4) == {"a", "b"}
    assert shards.tile_runs(rec, 40)[0] == [] and sum(map(len, shards.tile_runs(rec, 40))) == 30
    # hostile specs: one line each
    for spec, spatial, why in (("  by: tile\n  level: 25\n  max: 4\n", None, "needs `level:` from 0 to 24, not 25"),
                               ("  by: tile\n  max: 4\n", None, "needs `level:` from 0 to 24, not None"),
                               ("  by: tile\n  level: 3\n  max: 4\n", "", r"needs `spatial.bbox`"),
                               ("  by: tile\n  level: 14\n  max: 4\n", None, "level 14 gives .* tiles over spatial.bbox")):
        rec = load(_recipe(tmp_path, spec, spatial=spatial if spatial is not None else f"spatial:\n  bbox: {CANADA}\n"))
        with pytest.raises(D4CError, match=why) as info:
            shards.tile_runs(rec, 4)
        assert "\n" not in str(info.value)


def _write(path: Path, rows: int, cols: int, row: int, col: int) -> None:
    grid = Affine(0.1, 0.0, -141.0, 0.0, -0.1, 83.5)
    data = np.arange(rows * cols, dtype="uint16").reshape(1, rows, cols)
    reduce_cog.write_part(path, data, transform=grid @ Affine.translation(col, row), crs="EPSG:4326", nodata=None)


def test_the_mosaic_refuses_overlaps_gaps_and_parts_outside_the_tiles(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    _write(a, 10, 10, 0, 0)
    _write(b, 10, 10, 0, 5)  # overlaps a by five columns
    with pytest.raises(D4CError, match="a and b overlap"):
        reduce_cog.mosaic_parts([("a", a), ("b", b)], tmp_path / "out.tif")
    _write(b, 5, 10, 10, 0)  # below a, but half as wide: the grid's corner is empty
    _write(tmp_path / "c.tif", 10, 5, 5, 10)
    with pytest.raises(D4CError, match="leave cells of the 15 x 15 grid empty"):
        reduce_cog.mosaic_parts([("a", a), ("b", b), ("c", tmp_path / "c.tif")], tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()
    grid = Affine(0.1, 0.0, -141.0, 0.0, -0.1, 83.5)
    with pytest.raises(ValueError, match="reaches outside this shard's tiles"):  # the whole grid, one tile's shard
        reduce_cog.write_parts(tmp_path / "d.tif", [(None, np.zeros((2, 420, 890), "uint16"))], transform=grid,
                               crs="EPSG:4326", nodata=None, tiles=((4, 1, 2),), whole=False)


def _tif(out: Path) -> bytes:
    return next(out.glob("*.tif")).read_bytes()


def _unsharded_bytes(repo: Path, tmp: Path) -> bytes:
    """The COG the pre-sharding transform wrote: the whole grid as one array, one write_cog."""
    spec = importlib.util.spec_from_file_location("demo_transform", repo / "datasets" / DEMO / "transform.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rec = load(repo / "datasets" / DEMO / "recipe.yaml")
    p = rec.params
    import pandas as pd
    from rasterio.windows import Window

    capitals = pd.read_csv(repo / "datasets" / DEMO / "sources" / "provinces-territories.csv",
                           usecols=["pruid", "capital_lat", "capital_lon"]).sort_values("pruid", kind="stable")
    bands = module.nearest(capitals.reset_index(drop=True), p, Window(0, 0, p["columns"], p["rows"]))
    path = tmp / "whole-array.tif"
    geo_writers.write_cog(path, bands, transform=Affine(p["cell_deg"], 0.0, p["west"], 0.0, -p["cell_deg"], p["north"]),
                          crs="EPSG:4326")
    return path.read_bytes()


@pytest.mark.timeout(300)
def test_the_raster_demo_sharded_whole_and_reversed_give_the_same_cog(
        repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import rasterio

    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    # Two shards rather than the recipe's four, for time (tests/test_demo_formats.py builds the
    # four under --check): the same 30 tiles, cut into 15 + 15.
    recipe = repo_copy / "datasets" / DEMO / "recipe.yaml"
    recipe.write_text(recipe.read_text(encoding="utf-8").replace("  max: 4\n", "  max: 2\n"), encoding="utf-8")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "2 shards"],
                   cwd=repo_copy, check=True)
    sharded, whole = repo_copy / "sharded", repo_copy / "whole"
    assert main(["build", DEMO, "--jobs", "2", "--out", str(sharded)]) == 0  # 2 shards in 2 processes, the reduce
    assert main(["build", DEMO, "--whole", "--out", str(whole)]) == 0
    folders = [repo_copy / f"s{i}" for i in (2, 1)]
    for i, folder in zip((2, 1), folders):  # one at a time, the last first
        assert main(["build", DEMO, "--shard", f"{i}/2", "--out", str(folder)]) == 0
    again = repo_copy / "again"
    capsys.readouterr()
    assert main(["build", DEMO, "--reduce", *map(str, folders), "--out", str(again)]) == 0
    assert f"{DEMO}_v1.0.0.tif  sha256:" in (out := capsys.readouterr().out) and " rows" not in out  # was "None rows"
    assert _tif(sharded) == _tif(whole) == _tif(again) == _unsharded_bytes(repo_copy, tmp_path)
    assert (again / "manifest.json").read_bytes() == (sharded / "manifest.json").read_bytes()
    with rasterio.open(next(sharded.glob("*.tif"))) as src:
        assert (src.width, src.height, src.count, src.crs.to_epsg()) == (890, 420, 2, 4326)
        assert src.overviews(1)  # the COG writer's overviews, made in the reduce
    docs = [json.loads((f / "shard.json").read_text()) for f in reversed(folders)]
    assert [d["shard"]["tiles"] for d in docs] == [[list(t) for t in r] for r in tiles.cut(tiles.covering(CANADA, 4), 2)]
    assert sum(len(d["outputs"]) for d in docs) == 30  # a part per tile: every tile holds cells here
    capsys.readouterr()
    # A shard whose tiles are not its run of the partition: one line, exit 1.
    odd = repo_copy / "odd"
    shutil.copytree(folders[1], odd)  # shard 1
    doc = json.loads((odd / "shard.json").read_text())
    doc["shard"]["tiles"][0] = docs[1]["shard"]["tiles"][0]
    (odd / "shard.json").chmod(0o644)
    (odd / "shard.json").write_text(json.dumps(doc))
    assert main(["build", DEMO, "--reduce", str(odd), str(folders[0]), "--out", str(repo_copy / "x")]) == 1
    err = capsys.readouterr().err
    assert "shard 1's tiles are not its run of the partition (level 4 over spatial.bbox)" in err
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    # A part of shard 2 slipped into shard 1 (hashes and listing in order): it lies outside shard 1's tiles.
    doc = json.loads((folders[1] / "shard.json").read_text())
    stolen = docs[1]["outputs"][0]
    name = reduce_cog.part_path(Path(f"{DEMO}_v1.0.0.tif"), len(doc["outputs"]) + 1).name
    shutil.copy(folders[0] / stolen["file"], odd / name)
    doc["outputs"].append({**stolen, "file": name})
    (odd / "shard.json").write_text(json.dumps(doc))
    assert main(["build", DEMO, "--reduce", str(odd), str(folders[0]), "--out", str(repo_copy / "x")]) == 1
    err = capsys.readouterr().err
    assert f"shard 1's {name} reaches outside shard 1's tiles" in err and "Traceback" not in err
