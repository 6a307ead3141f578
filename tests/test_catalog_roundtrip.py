"""The written catalog reads back as the same items through stac-geoparquet, DuckDB,
geopandas, pyarrow and rustac; it is deterministic; items and collections validate offline."""
from __future__ import annotations

import json
import math
import random
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
from catalog_factory import five_records, make_record, write_records
from d4c.catalog import build_catalog, load_records, metadata_from
from d4c.catalog.items import items_from_records
from d4c.catalog.validation import validate_collection, validate_item
from d4c.catalog.writer import table_to_items
from d4c.cli import main
from stac_geoparquet.arrow import stac_table_to_items

META = metadata_from(None)


def _plain(value: Any) -> Any:
    """A reader's value -> its JSON form; nulls dropped (Parquet has no 'absent')."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays from geopandas
        return _plain(value.tolist())
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _row_to_item(row: dict[str, Any]) -> dict[str, Any]:
    """A flat stac-geoparquet row (any reader) -> a STAC item, independent of d4c's reader."""
    row = dict(row)
    geom = row.pop("geometry")
    if isinstance(geom, bytes | bytearray):
        geom = shapely.from_wkb(bytes(geom))
    # geopandas consumes the bbox covering column on read: take it from the geometry then.
    b = row.pop("bbox", None) or dict(zip(("xmin", "ymin", "xmax", "ymax"), geom.bounds))
    top = {k: row.pop(k) for k in ("type", "stac_version", "stac_extensions", "id",
                                   "links", "assets", "collection")}
    props = _plain(row)
    props.setdefault("datetime", None)
    return {**_plain(top), "geometry": _plain(json.loads(shapely.to_geojson(geom))),
            "bbox": [b["xmin"], b["ymin"], b["xmax"], b["ymax"]], "properties": props}


def _from_pandas(value: Any) -> Any:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, list[dict], dict]:
    out = tmp_path / "catalog.parquet"
    count, colls = build_catalog(five_records(), out, metadata=META,
                                 collections_dir=tmp_path / "stac")
    items = items_from_records(five_records(), META)
    assert count == len(items) == 5
    return out, items, colls


def _by_id(items: list[dict]) -> dict[str, dict]:
    return {i["id"]: i for i in items}


def test_four_readers_give_the_same_items(built: tuple[Path, list[dict], dict]) -> None:
    out, items, _ = built
    expected = _by_id([_plain(i) | {"properties": _plain(i["properties"]) | {
        "datetime": i["properties"]["datetime"]}} for i in items])
    via_sgp = [_plain(i) for i in stac_table_to_items(pq.read_table(out))]
    for i in via_sgp:
        i["properties"].setdefault("datetime", None)
    via_pyarrow = [_row_to_item(r) for r in pq.read_table(out).to_pylist()]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cur = con.execute("SELECT * FROM read_parquet(?)", [str(out)])
    names = [d[0] for d in cur.description]
    via_duckdb = [_row_to_item(dict(zip(names, r))) for r in cur.fetchall()]
    gdf = gpd.read_parquet(out)
    via_geopandas = [_row_to_item({k: _from_pandas(v) for k, v in rec.items()})
                     for rec in gdf.to_dict("records")]
    assert gdf.crs.to_string() in {"OGC:CRS84", "EPSG:4326"}
    for name, got in [("stac-geoparquet", via_sgp), ("pyarrow", via_pyarrow),
                      ("duckdb", via_duckdb), ("geopandas", via_geopandas)]:
        assert _by_id(got) == expected, name
        assert [i["id"] for i in got] == [i["id"] for i in items], f"{name}: order"
    for item in via_sgp:
        assert validate_item(item) == [], item["id"]


def test_rustac_reads_the_same_items(built: tuple[Path, list[dict], dict]) -> None:
    """rustac (Rust's stac-geoparquet reader) gives the items back; it writes times as
    `+00:00` where d4c writes `.000000Z`, the same RFC 3339 instant."""
    import rustac
    from d4c.catalog.writer import TIME_COLUMNS

    out, items, _ = built

    def instant(item: dict) -> dict:
        props = dict(item["properties"])
        for key in TIME_COLUMNS:
            if props.get(key):
                props[key] = datetime.fromisoformat(props[key])
        props.setdefault("datetime", None)
        return {**item, "properties": props}

    got = [instant(_plain(f)) for f in rustac.read_sync(str(out))["features"]]
    assert got == [instant(_plain(i)) for i in items]


def test_same_records_same_bytes_in_any_order(tmp_path: Path) -> None:
    records = five_records()
    build_catalog(records, tmp_path / "a.parquet", metadata=META)
    random.Random(7).shuffle(records)
    build_catalog(records, tmp_path / "b.parquet", metadata=META)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_file_layout_sorted_zstd_with_collections_beside(built: tuple[Path, list, dict]) -> None:
    """The collections sit in `<catalog>.collections.json`, whose sha256 the footer names;
    the footer's stac-geoparquet metadata is the version alone (all its schema requires)."""
    import hashlib

    out, _, colls = built
    pf = pq.ParquetFile(out)
    ids = pq.read_table(out, columns=["collection", "version"]).to_pylist()
    assert ids == sorted(ids, key=lambda r: (r["collection"], r["version"]))
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    meta = pf.metadata.metadata
    assert json.loads(meta[b"stac-geoparquet"]) == {"version": "1.0.0"}
    side = out.with_name(out.name.removesuffix(".parquet") + ".collections.json").read_bytes()
    assert json.loads(meta[b"d4c:collections"]) == {
        "sha256": hashlib.sha256(side).hexdigest(), "collections": len(colls)}
    embedded = json.loads(side)["collections"]
    assert json.loads(side)["version"] == "1.0.0"
    assert embedded == colls and list(embedded) == sorted(embedded)
    assert json.loads(meta[b"geo"])["columns"]["geometry"]["covering"]["bbox"]["xmin"] == [
        "bbox", "xmin"]
    prov = colls["ca_d4c_provinces-territories"]
    assert prov["d4c:title_fr"].startswith("Jeu de") and prov["description"]
    assert prov["extent"]["spatial"]["bbox"] == [[-141.0, 41.7, -52.6, 83.1]]  # both versions
    for coll in colls.values():
        assert validate_collection(coll) == []


def test_static_stac_tree_links_resolve(built: tuple[Path, list, dict], tmp_path: Path) -> None:
    _, items, _ = built
    root = tmp_path / "stac"
    catalog = json.loads((root / "catalog.json").read_text())
    for child in (lk for lk in catalog["links"] if lk["rel"] == "child"):
        coll_path = root / child["href"]
        coll = json.loads(coll_path.read_text())
        for link in (lk for lk in coll["links"] if lk["rel"] == "item"):
            item = json.loads((coll_path.parent / link["href"]).read_text())
            assert item["collection"] == coll["id"]
            for lk in item["links"]:
                if lk["href"].startswith("./"):
                    assert (coll_path.parent / lk["href"]).is_file(), lk
    assert len(list(root.glob("*/*_v*.json"))) == len(items)


def test_validation_is_offline_and_not_trivial(built: tuple[Path, list, dict],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, items, _ = built

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validation tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    item = json.loads(json.dumps(items[0]))
    assert validate_item(item) == []
    del item["geometry"]  # core schema
    item["assets"]["manifest"]["file:checksum"] = "abc"  # file extension
    item["properties"]["d4c:concept_doi"] = "doi:10.1/x"  # our extension
    problems = "\n".join(validate_item(item))
    assert "geometry" in problems and "file:checksum" in problems and "concept_doi" in problems


def test_cli_build_and_validate_from_releases(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    releases = tmp_path / "releases"
    write_records(releases, five_records())
    out = tmp_path / "c.parquet"
    assert main(["catalog", "build", "--releases", str(releases), "--out", str(out)]) == 0
    assert main(["catalog", "validate", "--catalog", str(out)]) == 0
    assert "5 items, 4 collections, 0 problems" in capsys.readouterr().err
    assert len(load_records(releases)) == 5
    # Without --out, where query, validate and site look by default (it was a usage error).
    monkeypatch.chdir(tmp_path)
    assert main(["catalog", "build", "--releases", str(releases)]) == 0
    assert (tmp_path / "catalog.parquet").read_bytes() == out.read_bytes()
    assert main(["catalog", "validate"]) == 0


def test_bad_records_fail_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    releases = tmp_path / "releases"
    write_records(releases, [make_record("ca_a_b", "1.0.0")])
    (releases / "ca_a_b" / "1.0.0.json").write_text("{not json")
    out = tmp_path / "c.parquet"
    assert main(["catalog", "build", "--releases", str(releases), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1.0.0.json" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".c.parquet*"))
    rec = make_record("ca_a_b", "1.0.0", with_metadata=False)
    write_records(releases, [rec])
    assert main(["catalog", "build", "--releases", str(releases), "--out", str(out)]) == 1
    assert "has no `metadata`" in capsys.readouterr().err


def test_metadata_from_recipe_when_record_has_none(tmp_path: Path) -> None:
    """Records without `metadata` take it from datasets/<id>/recipe.yaml (the demo recipe)."""
    root = Path(__file__).resolve().parent.parent
    rec = make_record("ca_d4c_provinces-territories", "1.0.0", with_metadata=False)
    build_catalog([rec], tmp_path / "c.parquet", metadata=metadata_from(root))
    items = table_to_items(pq.read_table(tmp_path / "c.parquet"))
    assert items[0]["properties"]["d4c:title_fr"].startswith("Provinces et territoires")
    assert items[0]["properties"]["datetime"] == "2021-01-01T00:00:00.000000Z"


def test_factory_records_follow_the_release_schema() -> None:
    """The records these tests make are the records `d4c release` writes (same schema)."""
    from d4c import schemas

    for record in five_records():
        errors = schemas.errors("release", record)
        assert not errors, (record["id"], [e.message for e in errors][:3])


def test_metadata_from_the_recipe_at_the_released_commit(tmp_path: Path) -> None:
    """Without `metadata`, the recipe is read at the manifest's commit, not as edited since."""
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    rel = Path("datasets/ca_d4c_provinces-territories/recipe.yaml")
    (repo / rel).parent.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parent.parent / rel, repo / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "recipe"]):
        subprocess.run([*git, *cmd], cwd=repo, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                            capture_output=True, text=True).stdout.strip()
    recipe = repo / rel
    recipe.write_text(recipe.read_text().replace("Provinces et territoires du Canada",
                                                 "Titre modifié après la publication"))
    rec = make_record("ca_d4c_provinces-territories", "1.0.0", with_metadata=False)
    rec["manifest"]["code"]["commit"] = commit
    build_catalog([rec], tmp_path / "c.parquet", metadata=metadata_from(repo))
    items = table_to_items(pq.read_table(tmp_path / "c.parquet"))
    assert items[0]["properties"]["d4c:title_fr"].startswith("Provinces et territoires du Canada")
    rec["manifest"]["code"]["commit"] = None  # no commit: the working tree's recipe
    build_catalog([rec], tmp_path / "c.parquet", metadata=metadata_from(repo))
    items = table_to_items(pq.read_table(tmp_path / "c.parquet"))
    assert items[0]["properties"]["d4c:title_fr"].startswith("Titre modifié")
