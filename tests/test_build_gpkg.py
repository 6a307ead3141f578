"""The GeoPackage writer: same bytes from any row order, the fixed date GDAL writes, facts
checked against pyogrio/GDAL and sqlite3, rows read back by pyogrio, and the diff's verdict."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pyogrio
import pytest
from d4c.build import geo_writers, logical
from d4c.diff import compare
from test_build_formats import capitals, sha
from test_diff_formats import entry, judged, reasons


def test_gpkg_same_bytes_fixed_date_and_facts_match_gdal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01T00:00:00Z
    (tmp_path / "a").mkdir()
    a, b = tmp_path / "a" / "x.gpkg", tmp_path / "b.gpkg"
    geo_writers.write_gpkg(a, capitals(1), ["pruid"], layer="capitals")
    geo_writers.write_gpkg(b, capitals(-1), ["pruid"], layer="capitals")
    assert sha(a) == sha(b)  # another row order, another folder and file name: the same bytes
    assert sorted(os.listdir(tmp_path)) == ["a", "b.gpkg"]  # no temp folders, journals or side files
    with sqlite3.connect(f"file:{a}?mode=ro", uri=True) as db:
        assert db.execute("select table_name, last_change from gpkg_contents").fetchall() == \
            [("capitals", "2026-01-01T00:00:00Z")]
        assert db.execute("select count(*) from gpkg_extensions where extension_name = 'gpkg_rtree_index'").fetchone()[0] == 1
    info = pyogrio.read_info(a)
    facts = logical.describe(a, "gpkg")
    assert facts["rows"] == info["features"] == 13
    assert facts["crs"] == info["crs"] == "EPSG:4326"
    assert facts["geometry_types"] == ["Point"] and info["geometry_type"] == "Point"
    assert facts["bbox"] == pytest.approx(list(info["total_bounds"]))
    assert [c["name"] for c in facts["columns"]] == [*info["fields"], "geometry"]
    # read back by pyogrio: the rows in sort order, FIDs 1..n following it, the values intact
    back = pyogrio.read_dataframe(a, fid_as_index=True)
    want = capitals().sort_values("pruid").reset_index(drop=True)
    assert list(back.index) == list(range(1, 14)) and list(back["pruid"]) == list(want["pruid"])
    assert list(back["capital"]) == list(want["capital"]) and back.geometry.geom_equals(want.geometry, align=False).all()
    # the logical hash follows the values: the same rows as FlatGeobuf agree, a changed value does not
    fgb = tmp_path / "x.fgb"
    geo_writers.write_flatgeobuf(fgb, capitals(), ["pruid"])
    assert logical.describe(fgb, "flatgeobuf")["logical_sha256"] == facts["logical_sha256"]
    changed = capitals()
    changed.loc[0, "capital"] = "Somewhere else"
    geo_writers.write_gpkg(b, changed, ["pruid"], layer="capitals")
    assert logical.describe(b, "gpkg")["logical_sha256"] != facts["logical_sha256"]


def test_gpkg_field_added_and_dropped_is_major_from_the_files(tmp_path: Path) -> None:
    old, new = tmp_path / "old.gpkg", tmp_path / "new.gpkg"
    geo_writers.write_gpkg(old, capitals(), ["pruid"])
    changed = capitals().drop(columns=["code"])
    changed["kind"] = "capital"
    geo_writers.write_gpkg(new, changed, ["pruid"])
    ot, nt = compare.read_table(old, "gpkg"), compare.read_table(new, "gpkg")
    a = compare.compare_profiles(compare.profile_table(ot, compare.profile_manifest(entry(old, "gpkg"))),
                                 compare.profile_table(nt, compare.profile_manifest(entry(new, "gpkg"))))
    a["row_diff"] = compare.compare_rows(ot, nt, ["pruid"])
    assert a["columns"]["added"] == ["kind"] and a["columns"]["removed"] == ["code"]
    assert a["row_diff"]["changed"] == 0
    v = judged({}, {}, a)
    assert v["required"] == "major" and not v["ok"]
    assert reasons(v) == [("major", "`out`: column `code` removed"), ("minor", "`out`: column `kind` added")]
