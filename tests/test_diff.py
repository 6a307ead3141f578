"""`d4c diff`: artifact comparison, the SemVer verdict, previous files from a record, bounds."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from d4c.diff import render, semver
from d4c.diff.compare import (
    compare_profiles,
    compare_rows,
    profile_manifest,
    profile_table,
    read_table,
)
from d4c.diff.report import make_report
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point

DS = "ca_test_towns"


def recipe_text(version: str) -> str:
    return (f"id: {DS}\nversion: {version}\nsources:\n  - name: s\n    path: sources/s.csv\n"
            f"    sha256: {'a' * 64}\ntransform:\n  python: transform.py:build\n"
            "outputs:\n  - name: towns\n    format: parquet\n    sort_by: [id]\n    primary_key: [id]\n")


def write_build(out: Path, version: str, table: pa.Table, *, packages: str = "26.0.1",
                sample: bool = False) -> dict[str, Any]:
    """A build folder as `d4c build` leaves it: the artifact and its manifest entry."""
    out.mkdir(parents=True, exist_ok=True)
    name = f"{DS}_v{version}.parquet"
    pq.write_table(table, out / name, compression="zstd")
    raw = (out / name).read_bytes()
    logical = hashlib.sha256(str(table.schema).encode() + str(table.to_pylist()).encode()).hexdigest()
    manifest = {
        "manifest_version": 1,
        "dataset": {"id": DS, "version": version, "recipe_path": f"datasets/{DS}/recipe.yaml",
                    "recipe_sha256": "b" * 64},
        "code": {"commit": "c" * 40, "tree": None, "dirty": False},
        "environment": {"runner": "local", "sandbox": "bubblewrap", "network_isolation": "bwrap",
                        "dockerfile": "docker/Dockerfile", "dockerfile_sha256": "d" * 64,
                        "lock_sha256": "e" * 64, "image_id": None, "python": "3.11.2",
                        "packages": {"pyarrow": packages}},
        "params": {}, "source_date_epoch": 0, "sample": sample,
        "sources": [{"name": "s", "sha256": "a" * 64, "size": 4, "url": None, "path": "s.csv"}],
        "outputs": [{
            "name": "towns", "file": name, "format": "parquet",
            "media_type": "application/vnd.apache.parquet", "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(), "md5": hashlib.md5(raw).hexdigest(),
            "piece_size": 16384, "pieces_sha1": "", "rows": table.num_rows,
            "columns": [{"name": f.name, "type": str(f.type), "nulls": table.column(i).null_count}
                        for i, f in enumerate(table.schema)],
            "schema_fingerprint": None, "logical_sha256": logical, "geometry_types": [],
            "crs": None, "bbox": None,
        }],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2))
    return manifest


def write_record(root: Path, manifest: dict[str, Any], build: Path, url: str | None = None) -> None:
    out = manifest["outputs"][0]
    rec = {"record_version": 1, "id": DS, "version": manifest["dataset"]["version"],
           "released_at": "2026-11-26T12:00:00Z", "manifest": manifest, "doi": None,
           "concept_doi": None, "github_release": None, "bundle_sha256": "f" * 64,
           "torrents": [], "sources": [], "files": [{
               "role": "data", "name": out["name"], "file": out["file"], "size": out["size"],
               "sha256": out["sha256"], "md5": out["md5"], "media_type": out["media_type"],
               "urls": {"local": url or (build / out["file"]).as_uri()}}]}
    path = root / "releases" / DS / f"{rec['version']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2))


def towns(n: int = 5, **extra: list[Any]) -> pa.Table:
    cols: dict[str, Any] = {"id": list(range(1, n + 1)), "name": [f"town {i}" for i in range(1, n + 1)],
                            "pop": [i * 100 for i in range(1, n + 1)]}
    cols.update(extra)
    return pa.table(cols)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "datasets" / DS).mkdir(parents=True)
    (root / "datasets" / DS / "recipe.yaml").write_text(recipe_text("1.0.0"))
    old = write_build(tmp_path / "published", "1.0.0", towns())
    write_record(root, old, tmp_path / "published")
    return root


def diff(repo: Path, tmp_path: Path, version: str, table: pa.Table, **kw: Any) -> dict[str, Any]:
    (repo / "datasets" / DS / "recipe.yaml").write_text(recipe_text(version))
    write_build(tmp_path / "new", version, table, **kw)
    return make_report(repo, DS, tmp_path / "new")


def test_rows_by_primary_key() -> None:
    old = towns(4)
    new = pa.table({"id": [2, 3, 4, 5], "name": ["town 2", "TOWN 3", "town 4", "town 5"],
                    "pop": [200, 300, 401, 500]})
    r = compare_rows(old, new, ["id"])
    assert (r["added"], r["removed"], r["changed"]) == (1, 1, 2)
    assert r["changed_columns"] == {"name": 1, "pop": 1}
    assert r["examples"] == {"added": ["id=5"], "removed": ["id=1"],
                             "changed": ["id=3 (name: 'town 3' -> 'TOWN 3')", "id=4 (pop: 400 -> 401)"]}


def test_rows_without_key_are_multisets() -> None:
    r = compare_rows(towns(3), towns(3).slice(1), [])
    assert (r["by"], r["only_old"], r["only_new"]) == ("rows", 1, 0)


@pytest.mark.parametrize(("old", "new", "kind"), [
    ("1.0.0", "2.0.0", "major"), ("1.0.0", "1.1.0", "minor"), ("1.2.3", "1.2.4", "patch"),
    ("1.2.3", "1.2.3", "none"), ("1.2.3", "1.1.9", "downgrade"), ("1.9.9", "1.10.0", "minor"),
    ("2.0.0-rc.1", "2.0.0", "major"), ("1.1.0-rc.1", "1.1.0", "minor"),
])
def test_bump(old: str, new: str, kind: str) -> None:
    assert semver.bump(old, new) == kind


def test_release_of_a_release_candidate_is_the_bump_it_announced(repo: Path, tmp_path: Path) -> None:
    rc_table = towns().drop_columns(["pop"])  # the major change 2.0.0 is for
    rc = write_build(tmp_path / "rc", "2.0.0-rc.1", rc_table)
    write_record(repo, rc, tmp_path / "rc")
    fixed = rc_table.set_column(1, "name", pa.array(["town 1", "town 2", "TOWN 3", "town 4", "town 5"]))
    r = diff(repo, tmp_path, "2.0.0", fixed)  # a value fixed after the rc: still the 2.0.0 release
    sv = r["semver"]
    assert r["against"] == "2.0.0-rc.1"
    assert sv["ok"] and sv["required"] == "patch" and sv["bump"] == "major", sv
    assert "2.0.0-rc.1 announced a major release" in sv["message"]
    # even a further major change between the rc and its release is what 2.0.0 announced
    assert diff(repo, tmp_path, "2.0.0", rc_table.drop_columns(["name"]))["semver"]["ok"]


def test_release_candidate_of_a_minor_cannot_carry_a_major_change(repo: Path, tmp_path: Path) -> None:
    rc = write_build(tmp_path / "rc", "1.1.0-rc.1", towns(6))
    write_record(repo, rc, tmp_path / "rc")
    r = diff(repo, tmp_path, "1.1.0", towns(6).drop_columns(["pop"]))
    sv = r["semver"]
    assert r["against"] == "1.1.0-rc.1"
    assert not sv["ok"] and (sv["required"], sv["bump"]) == ("major", "minor")
    assert "set version to 2.0.0" in sv["message"]
    r2 = diff(repo, tmp_path, "1.1.0", towns(6).set_column(2, "pop", pa.array([1, 2, 3, 4, 5, 6])))
    assert r2["semver"]["ok"], r2["semver"]  # a patch after the rc is covered by 1.1.0


def test_column_removed_under_patch_fails_and_major_passes(repo: Path, tmp_path: Path) -> None:
    r = diff(repo, tmp_path, "1.0.1", towns().drop_columns(["pop"]))
    sv = r["semver"]
    assert not sv["ok"] and sv["required"] == "major" and sv["bump"] == "patch"
    assert "set version to 2.0.0" in sv["message"]
    md = render.markdown(r)
    assert "**SemVer: FAIL**" in md and "columns removed: `pop`" in md
    assert diff(repo, tmp_path, "2.0.0", towns().drop_columns(["pop"]))["semver"]["ok"]


def test_added_rows_and_column_need_minor(repo: Path, tmp_path: Path) -> None:
    t = towns(6, area=[1.5] * 6)
    r = diff(repo, tmp_path, "1.0.1", t)
    assert r["semver"]["required"] == "minor" and not r["semver"]["ok"]
    a = r["artifacts"]["towns"]
    assert a["columns"]["added"] == ["area"] and a["row_diff"]["added"] == 1
    assert a["rows"] == {"old": 5, "new": 6, "same": False}
    assert diff(repo, tmp_path, "1.1.0", t)["semver"]["ok"]


def test_value_fix_is_patch_and_retype_is_major(repo: Path, tmp_path: Path) -> None:
    t = towns().set_column(2, "pop", pa.array([100, 200, 333, 400, 500]))
    r = diff(repo, tmp_path, "1.0.1", t)
    assert r["semver"]["ok"] and r["semver"]["required"] == "patch"
    assert "id=3 (pop: 300 -> 333)" in render.markdown(r)
    retyped = towns().set_column(2, "pop", pa.array([100.0, 200, 300, 400, 500]))
    r2 = diff(repo, tmp_path, "1.1.0", retyped)
    assert r2["artifacts"]["towns"]["columns"]["retyped"] == [{"name": "pop", "old": "int64", "new": "double"}]
    assert not r2["semver"]["ok"] and r2["semver"]["required"] == "major"


def test_same_data_same_version_passes_but_changed_needs_bump(repo: Path, tmp_path: Path) -> None:
    r = diff(repo, tmp_path, "1.0.0", towns(), packages="27.0.0")
    assert r["semver"]["ok"] and r["semver"]["required"] == "none"
    assert r["environment"] == [{"field": "packages.pyarrow", "old": "26.0.1", "new": "27.0.0"}]
    r2 = diff(repo, tmp_path, "1.0.0", towns().set_column(1, "name", pa.array(list("abcde"))))
    assert not r2["semver"]["ok"] and r2["semver"]["bump"] == "none"


def test_unfetchable_previous_falls_back_to_manifests(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "published" / f"{DS}_v1.0.0.parquet").write_bytes(b"tampered")  # hash no longer matches
    r = diff(repo, tmp_path, "1.0.1", towns().drop_columns(["pop"]))
    a = r["artifacts"]["towns"]
    assert a["facts_from"] == "manifests" and a["row_diff"] is None
    assert "compared the manifests only" in r["note"]
    assert a["columns"]["removed"] == ["pop"] and not r["semver"]["ok"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    thread.join(timeout=5)


def test_previous_over_http(tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    base, folder = http_dir
    root = tmp_path / "repo"
    (root / "datasets" / DS).mkdir(parents=True)
    old = write_build(folder, "1.0.0", towns())
    write_record(root, old, folder, url=f"{base}/{DS}_v1.0.0.parquet")
    r = diff(root, tmp_path, "1.1.0", towns(7))
    assert r["artifacts"]["towns"]["facts_from"] == "files"
    assert r["artifacts"]["towns"]["row_diff"]["examples"]["added"] == ["id=6", "id=7"]


def test_geometry_type_and_crs_changes(tmp_path: Path) -> None:
    pts = gpd.GeoDataFrame({"id": [1, 2]}, geometry=[Point(0, 0), Point(1, 1)], crs="EPSG:4326")
    lines = gpd.GeoDataFrame({"id": [1, 2]}, geometry=[LineString([(0, 0), (1, 1)])] * 2, crs="EPSG:3347")
    pts.to_parquet(tmp_path / "a.parquet")
    lines.to_parquet(tmp_path / "b.parquet")
    base = profile_manifest({})
    a = profile_table(read_table(tmp_path / "a.parquet", "geoparquet"), base)
    b = profile_table(read_table(tmp_path / "b.parquet", "geoparquet"), base)
    assert (a.geometry_types, a.crs, b.geometry_types, b.crs) == (["Point"], "EPSG:4326", ["LineString"], "EPSG:3347")
    assert a.bbox == [0.0, 0.0, 1.0, 1.0]


def test_markdown_is_bounded_however_large(repo: Path, tmp_path: Path) -> None:
    wide = {f"c{i:05d}_" + "x" * 200: [i] * 5 for i in range(3000)}
    r = diff(repo, tmp_path, "1.1.0", towns(**wide))
    md = render.markdown(r)
    assert len(md.encode()) < render.STEP_SUMMARY_LIMIT and "... and 2985 more" in md
    many = {**r, "artifacts": {f"out{i}": r["artifacts"]["towns"] for i in range(5000)}}
    capped = render.markdown(many)
    assert len(capped.encode()) < 40_000 and "... and 4985 more" in capped  # lists are capped
    tiny = render.markdown(many, limit=5_000)
    assert len(tiny.encode()) <= 5_000 and "diff cut here" in tiny and "SemVer: pass" in tiny
    assert len(render.combined([many] * 30).encode()) <= render.COMMENT_LIMIT


def test_cli_exit_codes_formats_and_errors(repo: Path, tmp_path: Path) -> None:
    (repo / "datasets" / DS / "recipe.yaml").write_text(recipe_text("1.0.1"))
    write_build(tmp_path / "new", "1.0.1", towns().drop_columns(["pop"]))
    env = {**os.environ, "D4C_REPO": str(repo)}
    d4c = [sys.executable, "-m", "d4c", "diff", DS, "--build", str(tmp_path / "new")]
    md = subprocess.run([*d4c, "--save", str(tmp_path / "res")], capture_output=True, text=True, env=env, check=False)
    assert md.returncode == 1 and md.stdout.startswith(f"## Build diff: `{DS}` 1.0.0 -> 1.0.1")
    assert (tmp_path / "res" / "diff.md").read_text() == md.stdout
    js = subprocess.run([*d4c, "--format", "json"], capture_output=True, text=True, env=env, check=False)
    assert json.loads(js.stdout)["semver"]["required"] == "major"
    comb = subprocess.run([sys.executable, "-m", "d4c", "diff", "--combine", str(tmp_path),
                           "--save", str(tmp_path / "comment"), "--pr-number", "42"],
                          capture_output=True, text=True, env=env, check=False)
    assert comb.returncode == 0 and comb.stdout.startswith("<!-- d4c-build-diff -->")
    assert f"SemVer failures: `{DS}`" in comb.stdout
    assert (tmp_path / "comment" / "pr-number.txt").read_text() == "42\n"
    assert (tmp_path / "comment" / "comment.md").read_text() == comb.stdout
    for bad, msg in (([*d4c, "--against", "9.9.9"], "no release record"),
                     ([*d4c[:5], "--build", str(tmp_path / "nowhere")], "no build at")):
        p = subprocess.run(bad, capture_output=True, text=True, env=env, check=False)
        assert p.returncode == 1 and msg in p.stderr and "Traceback" not in p.stderr


def test_sample_build_compares_only_the_shape(repo: Path, tmp_path: Path) -> None:
    r = diff(repo, tmp_path, "1.0.1", towns(2), sample=True)  # 2 of 5 rows: not a removal
    assert r["semver"]["ok"] and r["semver"]["required"] == "none" and "Sample build" in r["note"]
    assert r["artifacts"]["towns"]["row_diff"] is None
    assert "--check --sample" in render.markdown(r)
    r2 = diff(repo, tmp_path, "1.0.1", towns(2).drop_columns(["name"]), sample=True)
    assert not r2["semver"]["ok"] and r2["semver"]["required"] == "major"


@pytest.mark.parametrize(("doc", "ok"), [
    ({"reproducible": False, "differences": ["a.parquet: row 3"]}, False),
    ({"reproducible": True, "differences": [], "variations": [{"tz": "UTC", "umask": "022"}]}, True),
])
def test_check_result_is_json(tmp_path: Path, doc: dict[str, object], ok: bool) -> None:
    from d4c.commands.diff import load_check

    (tmp_path / "check.json").write_text(json.dumps(doc))
    got = load_check(tmp_path / "check.json")
    assert got["ok"] is ok and got["details"]
    assert got["details"] == (["a.parquet: row 3"] if not ok else ["two builds, the second with other tz, umask"])


def test_check_result_without_verdict_is_one_line_error(tmp_path: Path) -> None:
    from d4c.commands.diff import load_check
    from d4c.errors import D4CError

    # A build log is not a result: diff never scrapes text for a verdict.
    (tmp_path / "check").write_text("built ca_x v1.0.0 with the local runner into out; identical in both builds\n")
    with pytest.raises(D4CError, match="not a --check result"):
        load_check(tmp_path / "check")


def test_duplicate_keys_are_counted() -> None:
    old = pa.table({"id": [1, 1, 2], "v": ["a", "b", "c"]})
    same = compare_rows(old, old, ["id"])
    assert same["duplicate_keys"] == {"old": 1, "new": 1}
    new = pa.table({"id": [1, 2, 2], "v": ["b", "c", "c"]})
    r = compare_rows(old.slice(1), new, ["id"])
    assert r["duplicate_keys"] == {"old": 0, "new": 1} and r["examples"]["changed"] == []
    assert compare_rows(towns(), towns(), ["id"])["duplicate_keys"] == {"old": 0, "new": 0}


def test_failed_check_diffs_the_kept_first_run(repo: Path, tmp_path: Path) -> None:
    (repo / "datasets" / DS / "recipe.yaml").write_text(recipe_text("1.0.1"))
    write_build(tmp_path / "out.check-differs" / "run1", "1.0.1", towns())
    log = tmp_path / "out.check.json"
    log.write_text(json.dumps({"reproducible": False, "differences": ["x.parquet: row 3"]}))
    env = {**os.environ, "D4C_REPO": str(repo)}
    p = subprocess.run([sys.executable, "-m", "d4c", "diff", DS, "--build", str(tmp_path / "out"),
                        "--check-result", str(log)], capture_output=True, text=True, env=env, check=False)
    assert p.returncode == 1, p.stderr
    assert "**NOT reproducible**" in p.stdout and "- x.parquet: row 3" in p.stdout and "**SemVer: pass**" in p.stdout


def test_the_check_result_beside_the_build_is_found_without_the_flag(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from d4c.cli import main

    monkeypatch.setenv("D4C_REPO", str(repo))
    (repo / "datasets" / DS / "recipe.yaml").write_text(recipe_text("1.0.1"))
    build = repo / ".d4c" / "build" / DS / "v1.0.1"  # where `d4c build DS --check` puts both
    write_build(build, "1.0.1", towns())
    assert main(["diff", DS]) == 0
    err = capsys.readouterr().err
    assert f"no `d4c build --check` result at {build}.check.json" in err and "--check-result FILE" in err
    (build.parent / "v1.0.1.check.json").write_text(
        json.dumps({"reproducible": False, "differences": ["x.parquet: row 3"]}))
    assert main(["diff", DS]) == 1
    out = capsys.readouterr()
    assert "**NOT reproducible**" in out.out and "- x.parquet: row 3" in out.out and "note:" not in out.err


def test_a_passing_check_vouches_only_for_the_build_it_checked(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`build --check`, then a plain `build` of changed code into the same folder: the old
    result stays beside it and must not say the new bytes are reproducible (the outsider's
    trial: 'bit-for-bit identical' over a build never checked)."""
    from d4c.build.check import manifest_sha256
    from d4c.cli import main

    monkeypatch.setenv("D4C_REPO", str(repo))
    (repo / "datasets" / DS / "recipe.yaml").write_text(recipe_text("1.0.1"))
    build = repo / ".d4c" / "build" / DS / "v1.0.1"
    write_build(build, "1.0.1", towns())
    result = build.parent / "v1.0.1.check.json"
    passed = {"reproducible": True, "differences": [], "manifest_sha256": manifest_sha256(build)}
    result.write_text(json.dumps(passed))
    assert main(["diff", DS]) == 0
    assert "bit-for-bit identical" in capsys.readouterr().out
    write_build(build, "1.0.1", towns().slice(1))  # rebuilt without --check: other bytes
    main(["diff", DS])  # (its SemVer verdict on the removed row is not what this is about)
    out = capsys.readouterr()
    assert "bit-for-bit identical" not in out.out and "- not run" in out.out
    assert f"note: {result} is the --check result of an earlier build" in out.err
    assert main(["diff", DS, "--check-result", str(result)]) == 1
    err = capsys.readouterr().err
    assert "is the --check result of another build" in err and len(err.strip().splitlines()) == 1
    result.write_text(json.dumps({"reproducible": True, "differences": []}))  # no tie: not trusted
    main(["diff", DS])
    assert "- not run" in capsys.readouterr().out


def test_previous_release_is_the_newest_on_the_builds_line(tmp_path: Path) -> None:
    from d4c.diff.previous import find_record

    for v in ("1.0.0", "1.1.0", "2.0.0"):
        write_record(tmp_path, write_build(tmp_path / f"b{v}", v, towns()), tmp_path / f"b{v}")
    (tmp_path / "releases" / DS / "not-semver.json").write_text("{}")  # never read
    assert find_record(tmp_path, DS, "1.1.1", None)["version"] == "1.1.0"  # a backport
    assert find_record(tmp_path, DS, "2.1.0", None)["version"] == "2.0.0"
    assert find_record(tmp_path, DS, "0.9.0", None)["version"] == "2.0.0"  # -> a downgrade verdict
    assert find_record(tmp_path, DS, "2.1.0", "1.0.0")["version"] == "1.0.0"
    assert find_record(tmp_path, "ca_test_other", "1.0.0", None) is None


def test_csv_artifacts_compare_by_key(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    (tmp_path / "b.csv").write_text("id,name,extra\n2,B,x\n3,c,y\n4,d,z\n")
    old, new = read_table(tmp_path / "a.csv", "csv"), read_table(tmp_path / "b.csv", "csv")
    r = compare_rows(old, new, ["id"])
    assert (r["added"], r["removed"], r["changed"]) == (1, 1, 1)
    assert r["examples"]["changed"] == ["id=2 (name: 'b' -> 'B')"]
    p = compare_profiles(profile_table(old, profile_manifest({})), profile_table(new, profile_manifest({})))
    assert p["columns"]["added"] == ["extra"] and p["rows"] == {"old": 3, "new": 3, "same": True}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=3000), min_size=0, max_size=400), st.integers(2_000, 200_000))
def test_markdown_never_exceeds_its_limit(names: list[str], limit: int) -> None:
    cols = {"added": names, "removed": names[::-1], "retyped": [{"name": n, "old": n, "new": n} for n in names]}
    pair = {"old": names[:50], "new": names[-50:], "same": False}
    art = {"status": "compared", "columns": cols, "nulls": [{"name": n, "old": 0, "new": 1} for n in names],
           "bytes": pair, "logical": pair, "size": {"old": 1, "new": 2, "same": False},
           "rows": {"old": 1, "new": 2, "same": False}, "geometry_types": pair, "crs": pair, "bbox": pair,
           "row_diff": {"by": "key", "key": names[:20] or ["id"], "added": 1, "removed": 1, "changed": 1,
                        "changed_columns": {n: 1 for n in names}, "duplicate_keys": {"old": 0, "new": 0},
                        "examples": {"added": names[:3], "removed": names[:3], "changed": names[:3]}}}
    report = {"dataset": "ca_x", "version": "2.0.0", "against": "1.0.0", "note": "".join(names)[:5000],
              "artifacts": {n or "x": art for n in names[:100]} or {"x": art},
              "sources": [{"field": n, "old": n, "new": n} for n in names], "environment": [], "params": [],
              "reproducibility": {"ok": False, "details": names}, "reproduce": ["d4c diff ca_x"],
              "semver": {"ok": False, "message": "m", "bump": "major", "reasons": [
                  {"kind": "major", "reason": n} for n in names]}}
    assert len(render.markdown(report, limit).encode()) <= limit
    assert len(render.combined([report] * 3, limit).encode()) <= limit
