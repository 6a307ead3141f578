"""The diff and its SemVer verdict for FlatGeobuf, PMTiles and COG, on real files' facts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from d4c.build import geo_writers, logical
from d4c.diff import compare, semver
from test_build_formats import capitals, grid


def entry(path: Path, fmt: str) -> dict[str, Any]:
    """What the manifest says of `path` (the facts part of an `outputs[]` entry)."""
    return {"format": fmt, "sha256": path.name, "size": path.stat().st_size, **logical.describe(path, fmt)}


def judged(old: dict[str, Any], new: dict[str, Any], a: dict[str, Any] | None = None) -> dict[str, Any]:
    a = a or compare.compare_profiles(compare.profile_manifest(old), compare.profile_manifest(new))
    a["status"] = "compared"
    return semver.verdict("1.0.0", "1.1.0", {"out": a})


def reasons(v: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["kind"], r["reason"]) for r in v["reasons"]]


def test_flatgeobuf_field_added_and_dropped_is_major_from_the_files(tmp_path: Path) -> None:
    old, new = tmp_path / "old.fgb", tmp_path / "new.fgb"
    geo_writers.write_flatgeobuf(old, capitals(), ["pruid"])
    changed = capitals().drop(columns=["code"])
    changed["kind"] = "capital"
    geo_writers.write_flatgeobuf(new, changed, ["pruid"])
    ot, nt = compare.read_table(old, "flatgeobuf"), compare.read_table(new, "flatgeobuf")
    a = compare.compare_profiles(compare.profile_table(ot, compare.profile_manifest(entry(old, "flatgeobuf"))),
                                 compare.profile_table(nt, compare.profile_manifest(entry(new, "flatgeobuf"))))
    a["row_diff"] = compare.compare_rows(ot, nt, ["pruid"])
    assert a["columns"]["added"] == ["kind"] and a["columns"]["removed"] == ["code"]
    assert a["geometry_types"]["same"] and a["crs"]["same"] and a["row_diff"]["changed"] == 0
    v = judged({}, {}, a)
    assert v["required"] == "major" and not v["ok"]
    assert reasons(v) == [("major", "`out`: column `code` removed"), ("minor", "`out`: column `kind` added")]
    # an added column alone is minor, and the 1.1.0 bump covers it
    geo_writers.write_flatgeobuf(new, capitals().assign(kind="capital"), ["pruid"])
    v = judged(entry(old, "flatgeobuf"), entry(new, "flatgeobuf"))
    assert v["required"] == "minor" and v["ok"]


def test_pmtiles_field_dropped_from_a_layer_is_major_added_is_minor(tmp_path: Path) -> None:
    old, dropped, added = (tmp_path / f"{n}.pmtiles" for n in ("old", "dropped", "added"))
    geo_writers.write_pmtiles(old, capitals(), ["pruid"], layer="capitals", max_zoom=3)
    geo_writers.write_pmtiles(dropped, capitals().drop(columns=["code"]).assign(kind="capital"), ["pruid"],
                              layer="capitals", max_zoom=3)
    geo_writers.write_pmtiles(added, capitals().assign(kind="capital"), ["pruid"], layer="capitals", max_zoom=3)
    v = judged(entry(old, "pmtiles"), entry(dropped, "pmtiles"))
    assert v["required"] == "major"
    assert reasons(v) == [("major", "`out`: field `capitals.code` removed"),
                          ("minor", "`out`: field `capitals.kind` added")]
    v = judged(entry(old, "pmtiles"), entry(added, "pmtiles"))
    assert v["required"] == "minor" and v["ok"]
    # a layer renamed: the old layer removed (major), its fields said once, as the layer
    geo_writers.write_pmtiles(added, capitals(), ["pruid"], layer="points", max_zoom=3)
    assert reasons(judged(entry(old, "pmtiles"), entry(added, "pmtiles"))) == [
        ("major", "`out`: layer `capitals` removed"), ("minor", "`out`: layer `points` added")]
    # fewer zoom levels is major, more is minor; the same tiles again is no change
    geo_writers.write_pmtiles(added, capitals(), ["pruid"], layer="capitals", max_zoom=2)
    assert ("major", "`out`: zoom range narrowed 0-3 -> 0-2") in reasons(judged(entry(old, "pmtiles"),
                                                                              entry(added, "pmtiles")))
    geo_writers.write_pmtiles(added, capitals(), ["pruid"], layer="capitals", max_zoom=3)
    assert judged(entry(old, "pmtiles"), entry(added, "pmtiles"))["required"] == "none"


def test_cog_band_removed_is_major_added_is_minor_values_are_patch(tmp_path: Path) -> None:
    t = Affine(0.05, 0, -141.0, 0, -0.05, 84.0)
    old, new = tmp_path / "old.tif", tmp_path / "new.tif"
    geo_writers.write_cog(old, grid(), transform=t, crs="EPSG:4326", nodata=0)
    geo_writers.write_cog(new, grid()[:1], transform=t, crs="EPSG:4326", nodata=0)
    v = judged(entry(old, "cog"), entry(new, "cog"))
    assert reasons(v) == [("major", "`out`: band `band_2` removed")] and not v["ok"]
    geo_writers.write_cog(new, np.concatenate([grid(), grid()[:1]]), transform=t, crs="EPSG:4326", nodata=0)
    v = judged(entry(old, "cog"), entry(new, "cog"))
    assert reasons(v) == [("minor", "`out`: band `band_3` added")] and v["ok"]
    changed = grid()
    changed[0, 10, 10] += 1
    geo_writers.write_cog(new, changed, transform=t, crs="EPSG:4326", nodata=0)
    assert reasons(judged(entry(old, "cog"), entry(new, "cog"))) == [("patch", "`out`: values changed")]
    geo_writers.write_cog(new, grid(), transform=Affine(0.1, 0, -141.0, 0, -0.1, 84.0), crs="EPSG:4326", nodata=0)
    v = judged(entry(old, "cog"), entry(new, "cog"))
    assert ("major", "`out`: pixel size changed 0.05 x -0.05 -> 0.1 x -0.1") in reasons(v)
