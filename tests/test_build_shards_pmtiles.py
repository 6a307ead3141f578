"""PMTiles of a `shards: {by: tile}` build (d4c.build.reduce_pmtiles): sharded in local
processes, whole, and shards built in another order then reduced give the same bytes; the low
zooms rebuilt from their children hold every point once; a shard archive with a tile outside
its tiles, a tile given twice, or no PMTiles at all fails in one line (real sandboxed builds,
tippecanoe, the pmtiles reader and tippecanoe-decode)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import pandas as pd
import pytest
import shapely
from d4c.build import geo_writers, pmtiles_bounded, reduce_pmtiles, shard_reduce, shards
from d4c.build.context import BuildContext, ContextError, OutputSpec, ShardView
from d4c.cli import main
from d4c.errors import D4CError
from d4c.recipe import load
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import zxy_to_tileid

TEMPLATE = "ca_d4c_capitals"
DS = "ca_test_tiled-features"
POINTS, LINES, LEVEL, MAX_ZOOM, COUNT = 240, 24, 2, 6, 3
TRANSFORM = '''import geopandas as gpd
import pandas as pd
import shapely


def build(ctx):
    table = pd.read_csv(ctx.source("features"), dtype={"id": "int64", "name": "string", "kind": "string",
                                                       "wkt": "string"})
    frame = gpd.GeoDataFrame(table.drop(columns=["wkt"]), geometry=shapely.from_wkt(table["wkt"]), crs="EPSG:4326")
    ctx.write_pmtiles("tiles", frame, max_zoom=int(ctx.params["max_zoom"]))
'''


def features_csv() -> bytes:
    """Points and lines over Canada; a few points sit on the level-2 tiles' edges (lon -90, and
    lat 66.51326, the edge between tile rows 0 and 1), where two tiles' buffers hold them."""
    rng = random.Random(15)
    rows = ["id,name,kind,wkt"]
    edge = [(-90.0, 50.0), (-90.0, 60.0), (-100.0, 66.5132604), (-75.0, 66.5132604)]
    for i in range(POINTS):
        x, y = edge[i] if i < len(edge) else (rng.uniform(-140, -53), rng.uniform(42, 82))
        rows.append(f"{i},p{i},point,POINT ({x:.6f} {y:.6f})")
    for i in range(LINES):
        coords = ", ".join(f"{rng.uniform(-140, -53):.6f} {rng.uniform(42, 82):.6f}" for _ in range(4))
        rows.append(f"{POINTS + i},l{i},line,\"LINESTRING ({coords})\"")
    return ("\n".join(rows) + "\n").encode()


def add_tiled(repo: Path) -> Path:
    """The capitals recipe's head, one CSV of points and lines, one PMTiles output, tile shards."""
    folder = repo / "datasets" / DS
    shutil.copytree(repo / "datasets" / TEMPLATE, folder)
    for old in (folder / "sources").iterdir():
        old.unlink()
    data = features_csv()
    (folder / "sources" / "features.csv").write_bytes(data)
    head = (folder / "recipe.yaml").read_text(encoding="utf-8").partition("spatial:\n")[0]
    (folder / "recipe.yaml").write_text(
        head.replace(f"id: {TEMPLATE}", f"id: {DS}")
        + "spatial:\n  bbox: [-141.0, 41.7, -52.6, 83.1]\nsources:\n  - name: features\n"
        f"    path: sources/features.csv\n    sha256: {hashlib.sha256(data).hexdigest()}\n    size: {len(data)}\n"
        f"transform:\n  python: transform.py:build\n  params:\n    max_zoom: {MAX_ZOOM}\n"
        f"environment: docker/Dockerfile\nshards:\n  by: tile\n  level: {LEVEL}\n  max: {COUNT}\n"
        "reduce:\n  method: tile_merge\noutputs:\n  - name: tiles\n    format: pmtiles\n    sort_by: [id]\n",
        encoding="utf-8")
    (folder / "transform.py").write_text(TRANSFORM, encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiled"], cwd=repo, check=True)
    return folder


def archive(folder: Path) -> Path:
    (found,) = folder.glob("*.pmtiles")
    return found


def z0_features(path: Path) -> list[dict]:
    with open(path, "rb") as fh:
        tile = Reader(MmapSource(fh)).get(0, 0, 0)
    return mapbox_vector_tile.decode(gzip.decompress(tile))["tiles"]["features"]


def tamper(folder: Path, data: bytes) -> None:
    """Replace the shard's archive and list its new bytes in shard.json (a consistent, hostile shard)."""
    path = archive(folder)
    path.chmod(0o644)
    path.write_bytes(data)
    doc = json.loads((folder / "shard.json").read_text())
    doc["outputs"][0].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (folder / "shard.json").chmod(0o644)
    (folder / "shard.json").write_text(json.dumps(doc))


def frame() -> gpd.GeoDataFrame:
    table = pd.read_csv(io.BytesIO(features_csv()), dtype={"name": "string", "kind": "string", "wkt": "string"})
    return gpd.GeoDataFrame(table.drop(columns=["wkt"]), geometry=shapely.from_wkt(table["wkt"]), crs="EPSG:4326")


def test_tile_set_and_the_features_near_it() -> None:
    tiles = reduce_pmtiles.TileSet.of([(2, 0, 1), (2, 1, 1)])
    assert tiles.holds(2, 0, 1) and tiles.holds(5, 15, 8) and not tiles.holds(5, 16, 15) and not tiles.holds(1, 0, 0)
    geoms = gpd.GeoSeries.from_wkt(["POINT (-100 50)", "POINT (-100 70)", "POINT (-100 67)", "POINT (100 -50)",
                                    "LINESTRING (-10 -60, 100 80)", "POINT EMPTY"]).values
    # row 1 starts at 66.51 N: 67 N is inside half a tile of it, 70 N too; the far point and the empty one are not
    assert reduce_pmtiles.select(geoms, tiles).tolist() == [True, True, True, False, True, False]
    assert reduce_pmtiles.select(geoms, tiles, margin=0.0).tolist() == [True, False, False, False, True, False]
    with pytest.raises(ValueError, match="at one zoom"):
        reduce_pmtiles.TileSet.of([(2, 0, 1), (3, 0, 1)])


def test_hostile_parts_fail_in_one_line(tmp_path: Path) -> None:
    """The merge's own checks (the sharded build below shows the merge of honest parts)."""
    tiles = reduce_pmtiles.TileSet.of([(LEVEL, 0, 0)])
    geo_writers.write_pmtiles(tmp_path / "1.pmtiles", frame(), ["id"], layer="tiles", max_zoom=3, tiles=tiles)
    part = reduce_pmtiles.Part("shard 1", tmp_path / "1.pmtiles", tiles)
    with open(part.path, "rb") as fh:  # zooms 2..3 under 2/0/0 only
        assert {zxy[0] for zxy, _ in all_tiles(MmapSource(fh))} == {2, 3}
    with pytest.raises(D4CError, match=r"shard 2's PMTiles holds tile 2/0/0, outside its tiles"):
        reduce_pmtiles.finish([part._replace(label="shard 2", tiles=reduce_pmtiles.TileSet.of([(LEVEL, 1, 0)]))],
                              tmp_path / "x.pmtiles")
    with pytest.raises(D4CError, match=r"tile 2/0/0 comes from both shard 1 and shard 2"):
        reduce_pmtiles.finish([part, part._replace(label="shard 2")], tmp_path / "x.pmtiles")
    for junk, why in ((b"", "is not a PMTiles v3 archive"), (b"PMTiles\x02" + bytes(200), "is not a PMTiles v3"),
                      (part.path.read_bytes()[:400], "is unreadable")):
        (tmp_path / "junk.pmtiles").write_bytes(junk)
        with pytest.raises(D4CError, match=why):
            reduce_pmtiles.finish([part._replace(path=tmp_path / "junk.pmtiles")], tmp_path / "x.pmtiles")
    # Well-formed archives with hostile content: a tile that is not MVT, vector_layers not tippecanoe's.
    tile_id = zxy_to_tileid(LEVEL, 0, 0)
    meta = {"name": "tiles", "minzoom": "0", "vector_layers": []}
    reduce_pmtiles.write_archive(tmp_path / "bad.pmtiles", [(tile_id, gzip.compress(b"\xff" * 9))], (0, 0, 0, 0), 0, meta)
    with pytest.raises(D4CError, match=r"tile 2/0/0 of the shards' PMTiles is not a gzip MVT tile"):
        reduce_pmtiles.finish([part._replace(path=tmp_path / "bad.pmtiles")], tmp_path / "x.pmtiles")
    reduce_pmtiles.write_archive(tmp_path / "bad.pmtiles", [], (0, 0, 0, 0), 0, {**meta, "vector_layers": [{"id": 1}]})
    with pytest.raises(D4CError, match=r"shard 1's PMTiles has metadata that is not .* vector_layers list"):
        reduce_pmtiles.finish([part._replace(path=tmp_path / "bad.pmtiles")], tmp_path / "x.pmtiles")
    assert not (tmp_path / "x.pmtiles").exists()


def test_a_part_without_tiles_merges_like_the_whole(tmp_path: Path) -> None:
    """Tile 3/0/3 (south of the data) keeps no tile, but its tippecanoe saw the features near it,
    one (at 170 W) near no other part's tiles: the archive's bounds still hold it, as a whole
    build's do. 3/7/7 is far from all. Merged with 3/1/2's part: the build of all three."""
    sets = [reduce_pmtiles.TileSet.of([t]) for t in ((3, 0, 3), (3, 1, 2), (3, 7, 7))]
    data = pd.concat([frame(), gpd.GeoDataFrame({"id": [999], "name": ["west"], "kind": ["point"]},
                                                geometry=[shapely.Point(-170, 45)], crs="EPSG:4326")])
    parts = []
    for n, tiles in enumerate(sets, 1):
        geo_writers.write_pmtiles(tmp_path / f"{n}.pmtiles", data, ["id"], layer="tiles", max_zoom=3, tiles=tiles)
        parts.append(reduce_pmtiles.Part(f"shard {n}", tmp_path / f"{n}.pmtiles", tiles))
    with open(parts[0].path, "rb") as fh:
        assert Reader(MmapSource(fh)).header()["tile_entries_count"] == 0
    reduce_pmtiles.finish(parts, tmp_path / "merged.pmtiles")
    geo_writers.write_pmtiles(tmp_path / "whole.pmtiles", data, ["id"], layer="tiles", max_zoom=3, finish=True,
                              tiles=reduce_pmtiles.TileSet.of([(3, 0, 3), (3, 1, 2), (3, 7, 7)]))
    assert (tmp_path / "merged.pmtiles").read_bytes() == (tmp_path / "whole.pmtiles").read_bytes()
    with open(tmp_path / "merged.pmtiles", "rb") as fh:
        assert Reader(MmapSource(fh)).metadata()["bounds"].startswith("-170.0000000,")


def test_tile_shards_equal_the_whole_build(repo_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    recipe = load(add_tiled(repo_copy) / "recipe.yaml")
    sharded, whole, again = repo_copy / "sharded", repo_copy / "whole", repo_copy / "again"
    assert main(["build", DS, "--jobs", str(COUNT), "--out", str(sharded)]) == 0  # the shards at once, the reduce
    assert main(["build", DS, "--whole", "--out", str(whole)]) == 0
    dirs = [repo_copy / f"s{n}" for n in range(1, COUNT + 1)]
    for n in reversed(range(1, COUNT + 1)):
        assert main(["build", DS, "--shard", f"{n}/{COUNT}", "--out", str(dirs[n - 1])]) == 0
    assert main(["build", DS, "--reduce", *map(str, reversed(dirs)), "--out", str(again)]) == 0
    result = archive(sharded).read_bytes()
    assert archive(whole).read_bytes() == result == archive(again).read_bytes()
    assert (again / "manifest.json").read_bytes() == (sharded / "manifest.json").read_bytes()
    local = shard_reduce.shards_dir(sharded)  # the parallel shards are the ones built one by one
    assert all((local / str(n) / "shard.json").read_bytes() == (dirs[n - 1] / "shard.json").read_bytes()
               for n in range(1, COUNT + 1))
    # Read back: every zoom 0..6, each shard's tiles its own; z0 holds every point once and every line.
    with open(archive(sharded), "rb") as fh:
        reader = Reader(MmapSource(fh))
        header, meta = reader.header(), reader.metadata()
        zooms = sorted({z for (z, _, _), _ in all_tiles(reader.get_bytes)})
    assert (header["min_zoom"], header["max_zoom"], zooms) == (0, MAX_ZOOM, list(range(MAX_ZOOM + 1)))
    assert (meta["minzoom"], meta["maxzoom"], meta["d4c:rebuilt_below"]) == ("0", str(MAX_ZOOM), str(LEVEL))
    assert meta["vector_layers"] == [{"id": "tiles", "description": "", "minzoom": 0, "maxzoom": MAX_ZOOM,
                                      "fields": {"id": "Number", "kind": "String", "name": "String"}}]
    features = z0_features(archive(sharded))
    points = [f["properties"]["name"] for f in features if f["geometry"]["type"] == "Point"]
    assert len(points) == POINTS and len(set(points)) == POINTS  # no point lost, none twice
    assert {f["properties"]["name"] for f in features if f["properties"]["kind"] == "line"} == \
        {f"l{i}" for i in range(LINES)}
    decoded = subprocess.run([str(Path(geo_writers.tippecanoe_binary()).with_name("tippecanoe-decode")),
                              str(archive(sharded)), "0", "0", "0"], capture_output=True, text=True, check=True)
    assert decoded.stderr == "" and decoded.stdout.count('"type": "Point"') == POINTS
    for n, folder in enumerate(dirs, 1):  # a shard holds zooms >= the level, under its own tiles only
        tiles = reduce_pmtiles.TileSet.of(shards.tile_runs(recipe, COUNT)[n - 1])
        with open(archive(folder), "rb") as fh:
            assert all(tiles.holds(*zxy) for zxy, _ in all_tiles(MmapSource(fh)))
    capsys.readouterr()
    # Hostile shards (their shard.json lists their bytes): a tile outside the shard's tiles, not PMTiles.
    bad = repo_copy / "bad"
    shutil.copytree(dirs[1], bad)
    tamper(bad, archive(dirs[0]).read_bytes())
    assert main(["build", DS, "--reduce", str(dirs[0]), str(bad), str(dirs[2]), "--out", str(repo_copy / "x")]) == 1
    err = capsys.readouterr().err
    assert "shard 2's PMTiles holds tile 2/" in err and "outside its tiles" in err and "Traceback" not in err
    tamper(bad, b"PK\x03\x04 not tiles")
    assert main(["build", DS, "--reduce", str(dirs[0]), str(bad), str(dirs[2]), "--out", str(repo_copy / "x")]) == 1
    err = capsys.readouterr().err
    assert "shard 2's PMTiles is not a PMTiles v3 archive" in err and "Traceback" not in err


def test_write_pmtiles_in_a_tile_shard_needs_a_fixed_max_zoom(tmp_path: Path) -> None:
    shard = ShardView(1, 2, (), tiles=((LEVEL, 0, 1),), parts=True)
    ctx = BuildContext("ca_test_x", "1.0.0", {}, {}, {"tiles": OutputSpec("tiles", "pmtiles", tmp_path / "t.pmtiles")},
                       0, shard=shard)
    for zoom, args in ((None, ()), (1, ()), (6, ("-zg",))):
        with pytest.raises(ContextError, match=r"needs a fixed max_zoom >= the shard level 2 \(got "):
            ctx.write_pmtiles("tiles", frame(), max_zoom=zoom, args=args)
    assert not (tmp_path / "t.pmtiles").exists()


def test_pmtiles_outputs_need_tile_shards(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(
        "id: ca_test_x\nversion: 1.0.0\nspatial:\n  bbox: [-141, 41.7, -52.6, 83.1]\nsources:\n"
        f"  - {{name: a, path: a.csv, sha256: '{'a' * 64}', size: 1}}\ntransform:\n  python: transform.py:build\n"
        "shards:\n  by: source_file\n  max: 2\nreduce:\n  method: tile_merge\n"
        "outputs:\n  - name: t\n    format: pmtiles\n", encoding="utf-8")
    with pytest.raises(D4CError, match=r"PMTiles outputs \(t\) need `shards: \{by: tile\}`"):
        shards.spec_of(load(tmp_path / "recipe.yaml"))


def test_bombs_and_loops_in_a_part_fail_in_one_line(tmp_path: Path) -> None:
    """A shard's transform is untrusted and the reduce runs outside its sandbox: a tile that
    inflates past the limit, and a leaf directory that points back at itself, are one line."""
    from pmtiles.tile import Compression, Entry, TileType, serialize_directory, serialize_header

    tiles = reduce_pmtiles.TileSet.of([(LEVEL, 0, 0)])
    bomb = gzip.compress(bytes(pmtiles_bounded.MAX_TILE_BYTES + 1), compresslevel=9, mtime=0)
    assert len(bomb) < 100_000
    meta = {"name": "tiles", "minzoom": "0", "vector_layers": []}
    path = tmp_path / "bomb.pmtiles"
    reduce_pmtiles.write_archive(path, [(zxy_to_tileid(LEVEL, 0, 0), bomb)], (0, 0, 0, 0), 0, meta)
    with pytest.raises(D4CError, match=r"tile 2/0/0 of the shards' PMTiles is not a gzip MVT tile "
                                       r"\(ValueError: the tile inflates past 64 MiB\)"):
        reduce_pmtiles.finish([reduce_pmtiles.Part("shard 1", path, tiles)], tmp_path / "x.pmtiles")
    # A root directory whose one entry is a leaf: the leaf area holds that same directory.
    size = 0
    while len(root := serialize_directory([Entry(zxy_to_tileid(LEVEL, 0, 0), 0, size, 0)])) != size:
        size = len(root)  # the entry's length is the directory's own (gzip of a few bytes: a fixed point)
    body = gzip.compress(json.dumps(meta).encode(), mtime=0)
    head = {"root_offset": 127, "root_length": len(root), "metadata_offset": 127 + len(root),
            "metadata_length": len(body), "leaf_directory_offset": 127, "leaf_directory_length": len(root),
            "tile_data_offset": 127 + len(root) + len(body), "tile_data_length": 0,
            "addressed_tiles_count": 0, "tile_entries_count": 0, "tile_contents_count": 0, "clustered": True,
            "internal_compression": Compression.GZIP, "tile_compression": Compression.GZIP,
            "tile_type": TileType.MVT, "min_zoom": 0, "max_zoom": 3, "min_lon_e7": 0, "min_lat_e7": 0,
            "max_lon_e7": 0, "max_lat_e7": 0, "center_zoom": 0, "center_lon_e7": 0, "center_lat_e7": 0}
    loop = tmp_path / "loop.pmtiles"
    loop.write_bytes(serialize_header(head) + root + body)
    with pytest.raises(D4CError, match=r"shard 1's PMTiles is unreadable \(ValueError: directories nest deeper"):
        reduce_pmtiles.finish([reduce_pmtiles.Part("shard 1", loop, tiles)], tmp_path / "x.pmtiles")
    assert not (tmp_path / "x.pmtiles").exists()
    # The host describes any build's PMTiles output (sharded or not) with the same bounded reader.
    from d4c.build import logical

    with pytest.raises(ValueError, match=r"directories nest deeper than 4"):
        logical.describe(loop, "pmtiles")
    for name, meta_bytes in (("meta-bomb", gzip.compress(bytes(pmtiles_bounded.MAX_METADATA_BYTES + 1), mtime=0)),
                             ("meta-list", gzip.compress(b"[1]", mtime=0))):
        doc = {**head, "metadata_length": len(meta_bytes), "tile_data_offset": 127 + len(root) + len(meta_bytes)}
        (tmp_path / name).write_bytes(serialize_header(doc) + root + meta_bytes)
        with pytest.raises(ValueError, match=r"inflates past 16 MiB|not a JSON object"):
            logical.describe(tmp_path / name, "pmtiles")
