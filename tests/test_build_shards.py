"""Sharded builds: the partition, one shard, the reduce, `--check`; the bytes of a sharded
build equal one unsharded build's (real sandboxed builds of a small demo-like dataset)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from d4c.build import shard_reduce, shards
from d4c.cli import main
from d4c.errors import D4CError, UsageError
from d4c.recipe import load

TEMPLATE = "ca_d4c_provinces-territories"
DS = "ca_test_sharded-capitals"
TRANSFORM = '''import geopandas as gpd
import pandas as pd

DTYPES = {"pruid": "int16", "code": "string", "name_en": "string", "name_fr": "string", "kind": "string",
          "capital": "string", "capital_lat": "float64", "capital_lon": "float64"}


def build(ctx):
    frames = [pd.read_csv(path, dtype=DTYPES, encoding="utf-8") for _, path in ctx.shard_files()]
    table = pd.concat(frames, ignore_index=True)
    points = gpd.points_from_xy(table["capital_lon"], table["capital_lat"])
    ctx.write_geoparquet("capitals", gpd.GeoDataFrame(table.drop(columns=["capital_lat", "capital_lon"]),
                                                      geometry=points, crs="EPSG:4326"))
    ctx.write_parquet("table", table)
'''


def add_sharded(repo: Path, parts: int = 4, count: int = 3, by: str = "source_file") -> Path:
    """The provinces demo split into `parts` CSV files kept in git, built in `count` shards."""
    folder = repo / "datasets" / DS
    shutil.copytree(repo / "datasets" / TEMPLATE, folder)
    rows = (folder / "sources" / "provinces-territories.csv").read_text(encoding="utf-8").splitlines()
    (folder / "sources" / "provinces-territories.csv").unlink()
    header, body = rows[0], rows[1:]
    sources = []
    for k in range(parts):
        data = "\n".join([header, *body[k::parts]]).encode() + b"\n"
        (folder / "sources" / f"part-{k}.csv").write_bytes(data)
        sources.append(f"  - name: part-{k}\n    path: sources/part-{k}.csv\n"
                       f"    sha256: {hashlib.sha256(data).hexdigest()}\n    size: {len(data)}\n")
    text = (folder / "recipe.yaml").read_text(encoding="utf-8")
    head, _, rest = text.partition("sources:\n")
    _, _, tail = rest.partition("transform:\n")
    key = "  key: pruid\n" if by == "row_range" else ""
    tail = tail.replace("outputs:\n", f"shards:\n  by: {by}\n{key}  max: {count}\nreduce:\n  method: concat\n"
                        "outputs:\n  - name: table\n    format: parquet\n    sort_by: [pruid]\n")
    (folder / "recipe.yaml").write_text(head.replace(f"id: {TEMPLATE}", f"id: {DS}") + "sources:\n"
                                        + "".join(sources) + "transform:\n" + tail, encoding="utf-8")
    cut = "    table = ctx.shard_rows(table)\n" if by == "row_range" else ""
    (folder / "transform.py").write_text(TRANSFORM.replace("    points =", cut + "    points ="), encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "sharded"], cwd=repo, check=True)
    return folder


def artifacts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def test_partition_is_a_function_of_hashes_and_spec() -> None:
    found = [shards.Item(h * 64, f"s{h}") for h in "fa3c09"]
    cut = shards.assign(found, 4)
    assert cut == shards.assign(list(reversed(found)), 4)  # the recipe's order does not matter
    assert [len(p) for p in cut] == [1, 2, 1, 2]  # contiguous runs, as even as whole files allow
    assert [i for part in cut for i in part] == sorted(found)
    assert shards.parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x/2", "3"):
        with pytest.raises(UsageError):
            shards.parse_shard(bad)


def test_sharded_equals_unsharded_and_reduce_verifies(repo_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    add_sharded(repo_copy, parts=3, count=2)
    whole, sharded = repo_copy / "whole", repo_copy / "sharded"
    assert main(["build", DS, "--whole", "--out", str(whole)]) == 0
    assert main(["build", DS, "--jobs", "2", "--out", str(sharded)]) == 0  # 2 shards at once, then the reduce
    assert artifacts(sharded) == artifacts(whole) and len(artifacts(whole)) == 2
    manifest = json.loads((sharded / "manifest.json").read_text())
    dirs = [shard_reduce.shards_dir(sharded) / str(i) for i in (1, 2)]
    assert manifest["shards"] == [{"index": i + 1, "sha256": hashlib.sha256((d / "shard.json").read_bytes())
                                   .hexdigest()} for i, d in enumerate(dirs)]
    assert [o["rows"] for o in manifest["outputs"]] == [13, 13]
    doc = json.loads((dirs[1] / "shard.json").read_text())
    assert len(doc["inputs"]) == 2 and doc["environment"]["packages"]["pyarrow"]
    # One shard on its own (as a CI job would), and the reduce over shards given in another order.
    alone = repo_copy / "alone"
    assert main(["build", DS, "--shard", "2/2", "--out", str(alone)]) == 0
    assert (alone / "shard.json").read_bytes() == (dirs[1] / "shard.json").read_bytes()
    again = repo_copy / "again"
    assert main(["build", DS, "--reduce", str(alone), str(dirs[0]), "--out", str(again)]) == 0
    assert artifacts(again) == artifacts(whole)
    assert (again / "manifest.json").read_bytes() == (sharded / "manifest.json").read_bytes()
    capsys.readouterr()
    # A shard whose bytes are not the ones its manifest lists, or a missing shard: one line, exit 1.
    victim = next(alone.glob("*_table.parquet"))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-1] + b"x")
    assert main(["build", DS, "--reduce", str(dirs[0]), str(alone), "--out", str(repo_copy / "x")]) == 1
    assert "not the bytes shard 2/2 lists" in capsys.readouterr().err
    assert main(["build", DS, "--reduce", str(dirs[1]), "--out", str(repo_copy / "x")]) == 1
    err = capsys.readouterr().err
    assert "needs shards 1..2 once each, got [2]" in err and "Traceback" not in err
    # A shard manifest must list exactly the recipe's artifacts: the reduce reads those names.
    odd = repo_copy / "odd"
    shutil.copytree(dirs[0], odd)
    doc = json.loads((odd / "shard.json").read_text())
    doc["outputs"] = doc["outputs"][:1]
    (odd / "shard.json").chmod(0o644)
    (odd / "shard.json").write_text(json.dumps(doc))
    assert main(["build", DS, "--reduce", str(odd), str(dirs[1]), "--out", str(repo_copy / "x")]) == 1
    assert "not this recipe's artifacts for its inputs" in capsys.readouterr().err


def test_check_rebuilds_a_seeded_subset(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    folder = add_sharded(repo_copy, parts=1, count=2)  # one file, two shards: shard 1 holds none
    out = repo_copy / "checked"
    assert main(["build", DS, "--check", "--out", str(out)]) == 0
    result = json.loads((out.with_name("checked.check.json")).read_text())
    seed, _ = shard_reduce.check_subset(load(folder / "recipe.yaml"), [2])  # only shards with files
    assert result["reproducible"] and result["shards"] == {"count": 2, "seed": seed, "rebuilt": [2]}
    empty = json.loads((shard_reduce.shards_dir(out) / "1" / "shard.json").read_text())
    assert empty["inputs"] == [] and empty["outputs"] == [] and empty["environment"] is None
    assert sorted(p.name for p in (shard_reduce.shards_dir(out) / "1").iterdir()) == ["shard.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["index"] for s in manifest["shards"]] == [1, 2] and manifest["outputs"][0]["rows"] == 13


def test_plan_fans_out_one_row_per_shard(repo_copy: Path) -> None:
    from d4c import plan

    add_sharded(repo_copy, parts=4, count=3)
    rows = [r for r in plan.plan(repo_copy, "HEAD~1", "HEAD").jobs["shard"] if r["dataset"] == DS]
    assert [r["shard"] for r in rows] == ["1/3", "2/3", "3/3"]
    assert len({r["cache_key"] for r in rows}) == 3  # each shard caches the sources it fetched


def write_recipe(tmp: Path, sources: str, shards_spec: str, fmt: str = "parquet") -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(f"id: ca_test_x\nversion: 1.0.0\nsources:\n{sources}transform:\n  python: transform.py:build\n"
                    f"shards:\n{shards_spec}reduce:\n  method: concat\n"
                    f"outputs:\n  - name: t\n    format: {fmt}\n    sort_by: [k]\n", encoding="utf-8")
    return path


def test_archive_members_and_needed_sources(tmp_path: Path) -> None:
    a, b, z = "a" * 64, "b" * 64, "c" * 64
    src = (f"  - {{name: one, path: one.csv, sha256: '{b}', size: 1}}\n"
           f"  - {{name: two, path: two.csv, sha256: '{a}', size: 1}}\n"
           f"  - {{name: lookup, path: l.csv, sha256: '{z}', size: 1}}\n")
    rec = load(write_recipe(tmp_path, src, "  by: source_file\n  max: 2\n  sources: [one, two]\n"))
    # plain files: shard 1 holds the lower sha256 ("two"), and every shard gets the unpartitioned lookup
    assert shards.needed_sources(rec, 1, 2) == {"two", "lookup"}
    assert shards.needed_sources(rec, 2, 2) == {"one", "lookup"}
    unpacked = tmp_path / "unpacked"
    (unpacked / "d").mkdir(parents=True)
    for name, data in (("x.csv", b"1"), ("d/y.csv", b"2"), ("z.csv", b"3")):
        (unpacked / name).write_bytes(data)
    rec = load(write_recipe(tmp_path, f"  - {{name: zip, path: a.zip, sha256: '{a}', size: 1, extract: true}}\n",
                            "  by: source_file\n  max: 2\n"))
    found = shards.items(rec, {"zip": unpacked})
    assert [i.member for i in found] == sorted(["x.csv", "d/y.csv", "z.csv"],
                                               key=lambda m: hashlib.sha256((unpacked / m).read_bytes()).hexdigest())
    assert [len(p) for p in shards.assign(found, 2)] == [1, 2] and shards.needed_sources(rec, 1, 2) == {"zip"}
    seed, chosen = shard_reduce.check_subset(rec, list(range(1, 41)))
    assert (seed, chosen) == shard_reduce.check_subset(rec, list(range(1, 41))) and len(chosen) == 5
    rec = load(write_recipe(tmp_path, src, "  by: source_file\n  max: 2\n", fmt="csv"))
    with pytest.raises(D4CError, match=r"cannot merge the output\(s\) t \(csv\)"):
        shards.spec_of(rec)


def test_check_finds_a_shard_that_depends_on_the_machine(repo_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    folder = add_sharded(repo_copy, parts=1, count=1)
    transform = folder / "transform.py"
    transform.write_text(transform.read_text().replace('    ctx.write_parquet("table", table)',
                                                       '    import os\n    table["tz"] = os.environ["TZ"]\n'
                                                       '    ctx.write_parquet("table", table)'))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "tz"],
                   cwd=repo_copy, check=True)
    out = repo_copy / "checked"
    assert main(["build", DS, "--check", "--out", str(out)]) == 1
    assert "not reproducible: shard 1/1 (build 3 of 3): " in capsys.readouterr().err
    result = json.loads(out.with_name("checked.check.json").read_text())
    assert not result["reproducible"] and result["shards"]["rebuilt"] == [1] and not out.exists()


def test_row_range_shards_equal_the_whole_build(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    add_sharded(repo_copy, parts=2, count=2, by="row_range")  # every shard reads both files, keeps its rows
    whole, sharded = repo_copy / "whole", repo_copy / "sharded"
    assert main(["build", DS, "--whole", "--out", str(whole)]) == 0
    assert main(["build", DS, "--out", str(sharded)]) == 0
    assert artifacts(sharded) == artifacts(whole)
    rows = [json.loads((shard_reduce.shards_dir(sharded) / i / "shard.json").read_text())["outputs"][0]["rows"]
            for i in ("1", "2")]
    assert rows == [6, 7]  # 13 rows cut at 13 // 2


def test_reduce_refuses_row_ranges_out_of_key_order(tmp_path: Path) -> None:
    import pyarrow as pa
    from d4c.build import writers

    rec = load(write_recipe(tmp_path, f"  - {{name: a, path: a.csv, sha256: '{'a' * 64}', size: 1}}\n",
                            "  by: row_range\n  key: k\n  max: 2\n"))
    built = []
    for index, keys in ((1, [5, 9]), (2, [7, 12])):  # shard 2 starts below shard 1's largest key
        folder = tmp_path / str(index)
        folder.mkdir()
        writers.write_parquet(folder / rec.artifact_name(rec.outputs[0]), pa.table({"k": keys}), ["k"])
        built.append(({"shard": {"index": index}}, folder))
    with pytest.raises(D4CError, match="shard 2's t starts at k = 7, below the previous shard's largest 9"):
        shard_reduce._check_key_order(rec, built)
    writers.write_parquet(built[1][1] / rec.artifact_name(rec.outputs[0]), pa.table({"k": [9, 12]}), ["k"])
    shard_reduce._check_key_order(rec, built)  # a key shared at the cut is in order


def test_reduce_refuses_shards_whose_schemas_differ(tmp_path: Path) -> None:
    import pyarrow as pa
    from d4c.build import writers

    rec = load(write_recipe(tmp_path, f"  - {{name: a, path: a.csv, sha256: '{'a' * 64}', size: 1}}\n",
                            "  by: source_file\n  max: 2\n"))
    one, two = tmp_path / "1.parquet", tmp_path / "2.parquet"
    writers.write_parquet(one, pa.table({"k": [1], "v": ["x"]}), ["k"])
    writers.write_parquet(two, pa.table({"k": [2], "v": pa.nulls(1)}), ["k"])  # a reader guessed "null"
    with pytest.raises(D4CError, match="shard 2's t differs in schema from shard 1's \\(v: string vs null\\)"):
        shard_reduce._merge(rec.outputs[0], [shard_reduce.ShardFile(1, one), shard_reduce.ShardFile(2, two)],
                            tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
