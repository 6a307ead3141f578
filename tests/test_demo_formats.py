"""The format demos (ca_d4c_capitals: GeoParquet, FlatGeobuf, PMTiles; ca_d4c_capital-distance_grid:
COG) built with `--check` by both runners: the same bytes in all four builds of each, and the
manifest's facts as an independent reader sees the file (pyogrio for FlatGeobuf, the pmtiles
reader and a small vector-tile decoder for PMTiles, rasterio and rio-cogeo for the COG), checked
against the facts typed into the sources.

Each dataset is built once per runner for the whole module (about 30 s with the image in place;
the first run makes the image, as tests/test_container_build.py does)."""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _require_tool, missing_tool
from d4c.cli import main
from test_container_build import prepare_podman

REPO = Path(__file__).resolve().parent.parent
VECTOR, RASTER = "ca_d4c_capitals", "ca_d4c_capital-distance_grid"
DEMOS = (VECTOR, RASTER)
RUNNERS = ("local", "container")


def _source_rows(dataset: str, name: str) -> list[dict[str, str]]:
    with open(REPO / "datasets" / dataset / "sources" / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


CAPITALS = _source_rows(VECTOR, "capitals.csv")
PROVINCIAL = _source_rows(RASTER, "provinces-territories.csv")


def _copy_repo(dst: Path) -> Path:
    """A git repository holding this checkout's files, as the repo_copy fixture makes (one
    commit, fixed dates), made once for the module."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    git = ["git", "-c", "user.name=d4c-test", "-c", "user.email=test@example.org"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run([*git, *argv], cwd=dst, check=True, env=env)
    return dst


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        repo = _copy_repo(tmp_path_factory.mktemp("demo") / "repo")
        mp.setenv("D4C_REPO", str(repo))
        mp.setenv("D4C_CACHE", str(tmp_path_factory.mktemp("demo-cache")))
        yield repo


def _build_all(repo: Path, runner: str) -> dict[str, Path]:
    outs = {}
    for dataset in DEMOS:
        out = repo / "out" / runner / dataset
        assert main(["build", dataset, "--check", "--runner", runner, "--out", str(out)]) == 0, (dataset, runner)
        outs[dataset] = out
    return outs


@pytest.fixture(scope="module")
def local(demo_repo: Path) -> dict[str, Path]:
    if not shutil.which("bwrap"):
        missing_tool("the build sandbox needs bubblewrap (bwrap)")
    return _build_all(demo_repo, "local")


@pytest.fixture(scope="module")
def container(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    with pytest.MonkeyPatch.context() as mp:  # the podman set-up of the container suite
        prepare_podman(_require_tool, mp, tmp_path_factory.mktemp("base-image"))
        yield _build_all(demo_repo, "container")


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def _outputs(out: Path) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in _manifest(out)["outputs"]}


@pytest.mark.timeout(1800)  # the first run builds the container image
def test_four_builds_of_each_demo_give_the_same_bytes(local: dict[str, Path], container: dict[str, Path]) -> None:
    for dataset in DEMOS:
        manifests = {r: _manifest(outs[dataset]) for r, outs in (("local", local), ("container", container))}
        assert manifests["container"]["environment"]["runner"] == "container"
        files = {r: [(o["file"], o["sha256"], o["logical_sha256"]) for o in m["outputs"]] for r, m in manifests.items()}
        assert files["local"] == files["container"], dataset
        assert manifests["local"]["environment"]["packages"] == manifests["container"]["environment"]["packages"]
        for outs in (local, container):
            out = outs[dataset]
            check = json.loads(out.with_name(out.name + ".check.json").read_text())
            assert check["differences"] == [] and all(a["identical"] for a in check["artifacts"]), (dataset, check)
            for name, sha, _ in files["local"]:  # the bytes on disk are the bytes the manifest names
                assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
    formats = {o["format"] for d in DEMOS for o in _manifest(local[d])["outputs"]}
    assert formats == {"geoparquet", "flatgeobuf", "pmtiles", "cog"}


def test_flatgeobuf_facts_as_pyogrio_reads_them(local: dict[str, Path]) -> None:
    import geopandas as gpd
    import pyogrio

    outs = _outputs(local[VECTOR])
    fgb, parquet = outs["capitals-fgb"], outs["capitals"]
    path = local[VECTOR] / fgb["file"]
    info = pyogrio.read_info(path)
    assert info["driver"] == "FlatGeobuf" and info["layer_name"] == "capitals-fgb"
    assert info["features"] == fgb["rows"] == len(CAPITALS) == 14
    assert info["crs"] == fgb["crs"] == "EPSG:4326"
    assert [info["geometry_type"]] == fgb["geometry_types"] == ["Point"]
    assert list(info["fields"]) == [c["name"] for c in fgb["columns"] if c["name"] != "geometry"]
    assert list(info["total_bounds"]) == fgb["bbox"]
    assert info["capabilities"]["fast_spatial_filter"]  # the packed R-tree is there
    frame = pyogrio.read_dataframe(path)
    got = {r.capital: (r.role, int(r.pruid), r.code, r.province_en, r.province_fr, r.geometry.x, r.geometry.y)
           for r in frame.itertuples()}
    want = {r["capital"]: (r["role"], int(r["pruid"]), r["code"], r["province_en"], r["province_fr"],
                           float(r["lon"]), float(r["lat"])) for r in CAPITALS}
    assert got == want
    # the same rows as the GeoParquet (which adds its bbox covering column), read by geopandas
    table = gpd.read_parquet(local[VECTOR] / parquet["file"])
    assert [c["name"] for c in parquet["columns"] if c["name"] != "bbox"] == [c["name"] for c in fgb["columns"]]
    assert {r.capital: (r.role, int(r.pruid), r.code, r.province_en, r.province_fr, r.geometry.x, r.geometry.y)
            for r in table.itertuples()} == want


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _messages(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protocol buffer message: ints, or bytes for the other wire types."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            n = {1: 8, 5: 4}[wire]
            value, i = buf[i:i + n], i + n
        yield key >> 3, value


def _packed(buf: bytes) -> list[int]:
    out, i = [], 0
    while i < len(buf):
        v, i = _varint(buf, i)
        out.append(v)
    return out


def _decode_points(tile: bytes, z: int, x: int, y: int) -> dict[str, list[dict[str, Any]]]:
    """The point features of a Mapbox vector tile, per layer: their string and integer
    properties and their position in degrees (the vector tile 2.1 encoding, decoded by hand)."""
    layers: dict[str, list[dict[str, Any]]] = {}
    for field, layer in _messages(tile):
        if field != 3:
            continue
        parts = list(_messages(layer))
        name = next(v for f, v in parts if f == 1).decode()
        extent = next((v for f, v in parts if f == 5), 4096)
        keys = [v.decode() for f, v in parts if f == 3]
        values = []
        for f, v in parts:
            if f == 4:
                kind, raw = next(_messages(v))
                values.append(raw.decode() if kind == 1 else raw)  # 1 string, 4/5 int/uint
        features = []
        for f, v in parts:
            if f != 2:
                continue
            feature = dict(_messages(v))
            tags, geometry = _packed(feature[2]), _packed(feature[4])
            assert feature[3] == 1 and geometry[0] == 9  # a POINT, one MoveTo
            px, py = ((g >> 1) ^ -(g & 1) for g in geometry[1:3])
            n = 2 ** z
            lon = (x + px / extent) / n * 360 - 180
            lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + py / extent) / n))))
            props = {keys[tags[k]]: values[tags[k + 1]] for k in range(0, len(tags), 2)}
            features.append({**props, "lon": lon, "lat": lat})
        layers[name] = features
    return layers


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def test_pmtiles_facts_as_the_pmtiles_reader_reads_them(local: dict[str, Path]) -> None:
    from pmtiles.reader import MmapSource, Reader, all_tiles

    tiles = _outputs(local[VECTOR])["capitals-tiles"]
    facts = tiles["tiles"]
    with open(local[VECTOR] / tiles["file"], "rb") as fh:
        reader = Reader(MmapSource(fh))
        header, meta = reader.header(), reader.metadata()
        assert (header["min_zoom"], header["max_zoom"]) == (facts["min_zoom"], facts["max_zoom"]) == (0, 6)
        bounds = [header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")]
        assert bounds == tiles["bbox"] == [-135.0568, 43.6532, -52.7126, 63.7467]
        assert sum(1 for _ in all_tiles(reader.get_bytes)) == facts["tile_count"] == header["addressed_tiles_count"]
        [layer] = meta["vector_layers"]
        [fact] = facts["layers"]
        assert layer["id"] == fact["name"] == "capitals-tiles" and layer["fields"] == fact["fields"]
        assert set(fact["fields"]) == set(CAPITALS[0]) - {"lat", "lon"}
        assert fact["features"] == tiles["rows"] == 14 and fact["geometry"] == "Point"
        assert "strategies" not in meta  # tippecanoe dropped no point at any zoom
        # every capital, at the lowest and highest zoom, in the tile its coordinates fall in
        for z in (0, 6):
            for row in CAPITALS:
                lon, lat = float(row["lon"]), float(row["lat"])
                x, y = _tile_of(lon, lat, z)
                found = [f for f in _decode_points(gzip.decompress(reader.get(z, x, y)), z, x, y)["capitals-tiles"]
                         if f["capital"] == row["capital"]]
                assert len(found) == 1, (z, row["capital"])
                assert found[0]["pruid"] == int(row["pruid"]) and found[0]["province_fr"] == row["province_fr"]
                tolerance = 360 / 2 ** z / 4096 * 2  # two tile pixels
                assert abs(found[0]["lon"] - lon) < tolerance and abs(found[0]["lat"] - lat) < tolerance


def _haversine_km(lon1: float, lat1: float, lon2: float, lat2: float, radius: float = 6371.0088) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(min(h, 1.0)))


def test_cog_facts_as_rasterio_reads_them(local: dict[str, Path]) -> None:
    import numpy as np
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    cog = _outputs(local[RASTER])["distance"]
    grid = cog["raster"]
    path = local[RASTER] / cog["file"]
    valid, errors, warnings = cog_validate(str(path), quiet=True)
    assert valid and errors == [] and warnings == []
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.count) == (grid["width"], grid["height"], grid["bands"]) == (890, 420, 2)
        assert list(src.dtypes) == grid["dtypes"] == ["uint16", "uint16"]
        assert src.nodata is None and grid["nodata"] is None and all(c["nulls"] == 0 for c in cog["columns"])
        assert list(src.transform)[:6] == grid["transform"] == [0.1, 0.0, -141.0, 0.0, -0.1, 83.5]
        assert src.crs.to_epsg() == 4326 and cog["crs"] == "EPSG:4326"
        assert src.overviews(1) == src.overviews(2) == grid["overviews"] == [2]
        assert list(src.block_shapes[0]) == grid["block"] == [512, 512]
        assert src.compression.name.upper() == grid["compression"] == "DEFLATE"
        assert list(src.bounds) == cog["bbox"] == [-141.0, 41.5, -52.0, 83.5]
        assert os.path.exists(str(path) + ".aux.xml") is False
        km, pruid = src.read(1), src.read(2)
        capitals = [(float(r["capital_lon"]), float(r["capital_lat"]), int(r["pruid"])) for r in PROVINCIAL]
        assert sorted(set(pruid.ravel().tolist())) == sorted(p for _, _, p in capitals)
        for lon, lat, code in capitals:  # a capital's own cell: its PRUID, within half a cell's diagonal
            r, c = src.index(lon, lat)
            assert pruid[r, c] == code and km[r, c] <= 8
        # every 97th cell recomputed here with Python's math module (not NumPy)
        for i in range(0, km.size, 97):
            r, c = divmod(i, src.width)
            lon, lat = src.xy(r, c)  # the cell centre
            dist, code = min((_haversine_km(lon, lat, x, y), p) for x, y, p in capitals)
            assert abs(int(km[r, c]) - dist) <= 0.5 + 1e-9 and pruid[r, c] == code, (r, c)
        assert int(km.max()) == int(np.max(km)) < 3000
