"""Release record -> STAC item mapping: identity, extent, time, versions, assets, extensions."""
from __future__ import annotations

import pytest
from catalog_factory import make_record
from d4c import semver
from d4c.catalog.build import metadata_from
from d4c.catalog.collections import collection_for
from d4c.catalog.items import EXT, items_from_records, record_to_item, stac_time
from d4c.catalog.validation import validate_item
from d4c.errors import D4CError

META = metadata_from(None)


def _item(record: dict) -> dict:
    return record_to_item(record, META(record))


def test_identity_and_bilingual_properties() -> None:
    item = _item(make_record("ca_d4c_provinces-territories", "1.2.3"))
    props = item["properties"]
    assert item["id"] == "ca_d4c_provinces-territories_v1-2-3"
    assert item["collection"] == "ca_d4c_provinces-territories"
    assert props["version"] == "1.2.3"
    assert props["title"].startswith("Dataset") and props["d4c:title_fr"].startswith("Jeu de")
    assert props["d4c:description_fr"] == "Limites du Canada."
    assert props["license"] == "CC-BY-4.0" and props["keywords"] == ["boundaries", "canada"]
    assert props["sci:doi"].startswith("10.5281/zenodo.")
    assert props["d4c:concept_doi"] == "10.5281/zenodo.1000"
    assert f"https://doi.org/{props['sci:doi']}" in props["sci:citation"]
    assert props["processing:software"] == {"geopandas": "1.2.0", "pyarrow": "26.0.1",
                                            "python": "3.11.7"}
    cite = [lk for lk in item["links"] if lk["rel"] == "cite-as"]
    assert cite == [{"rel": "cite-as", "href": f"https://doi.org/{props['sci:doi']}",
                     "type": "text/html", "title": "DOI"}]
    assert validate_item(item) == []


def test_extent_union_in_crs84_and_projected_outputs_are_transformed() -> None:
    item = _item(make_record("ca-on_toronto_wards", "1.0.0", crs="EPSG:3347",
                             bbox=[7202000.0, 917000.0, 7250000.0, 950000.0]))
    x0, y0, x1, y1 = item["bbox"]
    assert -80.5 < x0 < x1 < -78.5 and 43.0 < y0 < y1 < 44.5  # Toronto, in lon/lat
    assert all(isinstance(v, float) for v in item["bbox"])
    ring = item["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] == [x0, y0] and [x1, y1] in ring


def test_table_without_geometry_falls_back_to_recipe_bbox_and_fails_without_any() -> None:
    rec = make_record("ca_statcan_2021_population-density_provinces", "1.0.0",
                      outputs=(("table", "parquet"),))
    assert _item(rec)["bbox"] == [-141.0, 41.7, -52.6, 83.1]
    del rec["metadata"]["spatial"]
    with pytest.raises(D4CError, match="no spatial extent"):
        _item(rec)


@pytest.mark.parametrize(("temporal", "expected"), [
    ({"start": "2021-05-11", "end": "2021-05-11"}, {"datetime": "2021-05-11T00:00:00.000000Z"}),
    ({"start": "2011-01-01"}, {"datetime": "2011-01-01T00:00:00.000000Z"}),
    ({"start": "2018-01-01", "end": "2022-12-31"},
     {"datetime": None, "start_datetime": "2018-01-01T00:00:00.000000Z",
      "end_datetime": "2022-12-31T23:59:59.000000Z"}),
])
def test_time_from_temporal_coverage(temporal: dict, expected: dict) -> None:
    props = _item(make_record("ca_x_y", "1.0.0", temporal=temporal))["properties"]
    assert {k: props.get(k) for k in expected} == expected
    assert props["created"] == "2026-11-26T12:00:00.000000Z"


def test_stac_time_normalises_to_utc_and_rejects_garbage() -> None:
    assert stac_time("2026-01-01T05:00:00+05:00") == "2026-01-01T00:00:00.000000Z"
    with pytest.raises(D4CError, match="not an ISO date"):
        stac_time("last tuesday")


def test_semver_order_not_string_order() -> None:
    versions = ["1.10.0", "1.9.0", "2.0.0-rc.1", "2.0.0", "1.9.0-alpha", "2.0.0-rc.10"]
    assert sorted(versions, key=semver.key) == [
        "1.9.0-alpha", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0-rc.10", "2.0.0"]
    with pytest.raises(D4CError, match="not SemVer"):
        semver.key("1.0")


def test_versions_deprecated_and_linked() -> None:
    records = [make_record("ca_a_b", v) for v in ("1.10.0", "1.2.0", "1.9.0")]
    items = items_from_records(records, META)
    assert [i["properties"]["version"] for i in items] == ["1.2.0", "1.9.0", "1.10.0"]
    assert [i["properties"]["deprecated"] for i in items] == [True, True, False]
    rels = [{lk["rel"]: lk["href"] for lk in i["links"]} for i in items]
    assert rels[0]["latest-version"] == rels[1]["latest-version"] == "./ca_a_b_v1-10-0.json"
    assert "latest-version" not in rels[2]
    assert rels[1]["predecessor-version"] == "./ca_a_b_v1-2-0.json"
    assert rels[1]["successor-version"] == "./ca_a_b_v1-10-0.json"
    assert "predecessor-version" not in rels[0] and "successor-version" not in rels[2]
    assert all(validate_item(i) == [] for i in items)


def test_a_newer_pre_release_is_not_the_latest() -> None:
    records = [make_record("ca_a_b", v) for v in ("2.0.0-rc.1", "1.9.0", "1.10.0", "2.0.0-rc.10")]
    records[0]["metadata"]["title"]["en"] = "Draft title of the release candidate"
    items = items_from_records(records, META)
    assert [i["properties"]["version"] for i in items] == ["1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0-rc.10"]
    assert [i["properties"]["deprecated"] for i in items] == [True, False, False, False]
    rels = [{lk["rel"]: lk["href"] for lk in i["links"]} for i in items]
    assert "latest-version" not in rels[1]
    assert rels[0]["latest-version"] == rels[2]["latest-version"] == "./ca_a_b_v1-10-0.json"
    assert rels[2]["successor-version"] == "./ca_a_b_v2-0-0-rc-10.json"
    assert collection_for(items)["title"] == "Dataset ca_a_b"  # the release speaks, not the rc
    released = items_from_records([*records, make_record("ca_a_b", "2.0.0")], META)
    assert [i["properties"]["deprecated"] for i in released] == [True] * 4 + [False]


def test_only_pre_releases_the_newest_is_latest() -> None:
    items = items_from_records([make_record("ca_a_b", v) for v in ("1.0.0-rc.2", "1.0.0-rc.1")], META)
    assert [i["properties"]["deprecated"] for i in items] == [True, False]


def test_duplicate_version_is_refused() -> None:
    with pytest.raises(D4CError, match="two release records"):
        items_from_records([make_record("ca_a_b", "1.0.0")] * 2, META)


def test_assets_cover_every_file_with_size_checksum_and_mirrors() -> None:
    rec = make_record("ca_a_b", "1.0.0", outputs=(("table", "parquet"), ("table-csv", "csv")))
    assets = _item(rec)["assets"]
    assert set(assets) == {"table", "table-csv", "torrent-table", "torrent-table-csv",
                           "manifest", "bundle"}
    assert assets["table"]["type"] == "application/vnd.apache.parquet"
    assert assets["table-csv"]["type"] == "text/csv; charset=utf-8"  # as the record holds it
    assert assets["torrent-table"]["type"] == "application/x-bittorrent"
    assert assets["table"]["roles"] == ["data"] and assets["bundle"]["roles"] == ["source"]
    by_file = {f["file"]: f for f in rec["files"]}
    for asset in assets.values():
        f = by_file[asset["title"]]
        assert asset["file:size"] == f["size"]
        assert asset["file:checksum"] == "1220" + f["sha256"]
        copies = {k: a for k, a in asset["alternate"].items() if k != "torrent"}
        hrefs = {asset["href"], *(a["href"] for a in copies.values())}
        assert hrefs == set(f["urls"].values())  # every mirror, once
        if "data" in asset["roles"]:  # the torrent is one more way to get a data file
            torrent = assets[f"torrent-{f['name']}"]
            assert asset["alternate"]["torrent"] == {"href": torrent["href"]}
    # A record without `mirrors` (older releases): the first https mirror by target name;
    # the others are alternates by name.
    assert set(assets["table"]["alternate"]) == {"s3", "zenodo", "torrent"}


def test_stac_extensions_match_the_fields_used() -> None:
    full = _item(make_record("ca_a_b", "1.0.0"))
    assert full["stac_extensions"] == sorted(EXT.values())
    bare = make_record("ca_a_b", "1.0.0", doi=None, targets=("local",))
    bare["manifest"]["environment"]["packages"] = {}
    del bare["manifest"]["environment"]["python"]
    del bare["metadata"]["title"]["fr"], bare["metadata"]["description"]["fr"]
    item = _item(bare)
    # One mirror, yet an alternate: the data file's torrent; d4c: each main href's d4c:mirror.
    assert item["stac_extensions"] == sorted([EXT["alternate"], EXT["d4c"], EXT["file"], EXT["sci"],
                                              EXT["version"]])
    assert {a["d4c:mirror"] for a in item["assets"].values()} == {"local"}
    assert "sci:doi" not in item["properties"] and "processing:software" not in item["properties"]
    assert validate_item(item) == []
    item["stac_extensions"].append(EXT["processing"])  # declared but unused
    assert any("but fields use" in p for p in validate_item(item))
