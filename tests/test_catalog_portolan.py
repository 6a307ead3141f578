"""The static tree against Portolan (rashid) and stac-check, and main hrefs that stay valid."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from catalog_factory import five_records, make_record
from d4c import schemas
from d4c.catalog import build_catalog
from d4c.catalog.items import D4C_VERSIONS, EXT, items_from_records
from jsonschema import Draft7Validator
from rashid import validate
from stac_check.lint import Linter

ID_WARNINGS = {"searchable_identifiers", "percent_encoded", "check_item_id"}


def _records() -> list[dict[str, Any]]:
    # A raster dataset with two versions: a single-version COG is the one shape Portolan
    # cannot take with an item per version (docs/catalog.md, "Portolan").
    return [*five_records(), make_record("ca_nrcan_elevation_cdem", "1.1.0", outputs=(("dem", "cog"),),
                                         temporal={"start": "2011-01-01"}, targets=("s3", "zenodo"))]


def _tree(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    build_catalog(records, tmp_path / "catalog.parquet", collections_dir=tmp_path / "stac")
    return tmp_path / "stac"


def test_rashid_finds_no_error_in_the_tree(tmp_path: Path) -> None:
    report = validate(_tree(tmp_path, _records()), data=False)
    assert [f"{f.rule_id} {f.path}: {f.message}" for f in report.errors] == []
    readme = (tmp_path / "stac" / "ca_d4c_provinces-territories" / "README.md").read_text()
    assert readme.startswith("# Dataset ca_d4c_provinces-territories") and "License: CC-BY-4.0" in readme


def test_a_single_version_raster_is_the_known_portolan_gap(tmp_path: Path) -> None:
    report = validate(_tree(tmp_path, five_records()), data=False)
    assert {(f.rule_id, Path(f.path).parent.name) for f in report.errors} == {
        ("PTL-COL-001", "ca_nrcan_elevation_cdem")}


def test_stac_check_has_no_id_warning_on_any_item(tmp_path: Path) -> None:
    root = _tree(tmp_path, _records())
    items = sorted(root.glob("*/*_v*.json"))
    assert len(items) == 6
    for path in items:
        practices = Linter(str(path)).create_best_practices_dict()
        assert not ID_WARNINGS & set(practices), (path.name, practices)
    old_form = json.loads(items[0].read_text())  # the id form before: <id>/v<version>
    old_form["id"] = f"{old_form['collection']}/v{old_form['properties']['version']}"
    (tmp_path / "old.json").write_text(json.dumps(old_form))
    assert ID_WARNINGS <= set(Linter(str(tmp_path / "old.json")).create_best_practices_dict())


def test_items_validate_against_the_published_d4c_schema(tmp_path: Path) -> None:
    root = _tree(tmp_path, _records())
    published = json.loads((root / "extensions/d4c/v1.1.0/schema.json").read_text())
    assert published == schemas.load("stac-d4c") and published["$id"] == EXT["d4c"]
    first = json.loads((root / "extensions/d4c/v1.0.0/schema.json").read_text())
    assert first == schemas.load("stac-d4c-v1.0.0")  # still served, unchanged, for old items
    validator = Draft7Validator(published)
    item = json.loads(next(root.glob("ca_d4c_provinces-territories/*_v1-1-0.json")).read_text())
    assert EXT["d4c"] in item["stac_extensions"]
    assert list(validator.iter_errors(item)) == []
    item["properties"]["d4c:concept_doi"] = "doi:10.1/x"
    item["properties"]["d4c:titel_fr"] = "typo"
    item["assets"]["bundle"]["d4c:retain"] = "forever"
    bad = {e.json_path for e in validator.iter_errors(item)}
    assert bad >= {"$.properties", "$.properties['d4c:concept_doi']", "$.assets.bundle['d4c:retain']"}


def test_an_item_declaring_v1_0_0_is_checked_against_v1_0_0(tmp_path: Path) -> None:
    from d4c.catalog.validation import validate_item

    root = _tree(tmp_path, _records())
    item = json.loads(next(root.glob("ca_d4c_provinces-territories/*_v1-1-0.json")).read_text())
    assert all(a["d4c:mirror"] for a in item["assets"].values() if "href" in a)
    assert validate_item(item) == []
    v1 = next(u for u in D4C_VERSIONS if u != EXT["d4c"])
    item["stac_extensions"] = sorted(v1 if u == EXT["d4c"] else u for u in item["stac_extensions"])
    for asset in item["assets"].values():  # d4c:mirror is new in v1.1.0
        asset.pop("d4c:mirror", None)
    assert validate_item(item) == []  # a v1.0.0 item as it was published still validates
    item["properties"]["d4c:at_risk"] = True
    assert any("[stac-d4c-v1.0.0]" in p and "d4c:at_risk" in p for p in validate_item(item))


def _with_mirrors(record: dict[str, Any]) -> dict[str, Any]:
    """Targets as Data for Canada has them: Source Cooperative keeps every version (the
    primary), processed/ only the latest, Zenodo every version."""
    record["mirrors"] = [{"name": "sourcecoop", "retain": "all"},
                         {"name": "processed", "retain": "latest"},
                         {"name": "zenodo", "retain": "all"}]
    return record


def test_main_href_is_a_kept_copy_and_only_the_newest_names_the_latest_copy() -> None:
    targets = ("sourcecoop", "processed", "zenodo")
    records = [_with_mirrors(make_record("ca_a_b", v, targets=targets, released_at=f"2026-0{n}-01T00:00:00Z"))
               for n, v in enumerate(("1.0.0", "1.1.0", "2.0.0"), start=1)]
    items = items_from_records(records, lambda r: r["metadata"])
    for item in items:
        newest = item["properties"]["version"] == "2.0.0"
        for key, asset in item["assets"].items():
            assert asset["href"].startswith("https://sourcecoop.example.org/"), key
            assert ("processed" in asset["alternate"]) is newest, (item["id"], key)
            assert "zenodo" in asset["alternate"]
        assert item["assets"]["capitals"]["alternate"]["torrent"]["href"] == \
            item["assets"]["torrent-capitals"]["href"]
        assert (EXT["d4c"] in item["stac_extensions"])  # the French title is always there
    assert items[-1]["assets"]["capitals"]["alternate"]["processed"]["d4c:retain"] == "latest"


def test_appending_the_next_versions_gives_the_rebuild_bytes(tmp_path: Path) -> None:
    from d4c.catalog import append_record
    from d4c.catalog.append import read_catalog
    from d4c.catalog.writer import table_to_items

    targets = ("sourcecoop", "processed", "zenodo")
    records = [_with_mirrors(make_record("ca_a_b", v, targets=targets, released_at=f"2026-0{n}-01T00:00:00Z"))
               for n, v in enumerate(("1.0.0", "1.1.0", "2.0.0"), start=1)]
    meta = lambda r: r["metadata"]
    for record in records:
        append_record(record, tmp_path / "appended.parquet", metadata=meta)
    build_catalog(records, tmp_path / "rebuilt.parquet", metadata=meta)
    assert (tmp_path / "appended.parquet").read_bytes() == (tmp_path / "rebuilt.parquet").read_bytes()
    table, _ = read_catalog(tmp_path / "appended.parquet")
    named = [sorted(i["assets"]["capitals"]["alternate"]) for i in table_to_items(table)]
    assert named == [["torrent", "zenodo"], ["torrent", "zenodo"], ["processed", "torrent", "zenodo"]]
