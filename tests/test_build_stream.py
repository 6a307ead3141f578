"""Builds bigger than memory: the streamed writers give the whole-table writers' bytes.

A stream is sorted in memory when it is small and by DuckDB's external sort when it is
not (`IN_MEMORY_BYTES`); both orders must be the same, for every type a table can hold
(nulls, NaN, -0.0, Unicode, binary, timestamps, decimals, booleans, dictionaries, lists,
duplicate keys), so the tests force the external sort with a budget of 0.
"""
from __future__ import annotations

import decimal
import json
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from d4c.build import logical, sorting, writers


@pytest.fixture
def external(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stream goes through the external sort, in small row groups (several of them)."""
    monkeypatch.setattr(sorting, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(sorting, "ROW_GROUP_ROWS", 97)


def mixed(n: int = 1000, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    words = ["", "a", "A", "é", "Île", "z", "zz", "日本", "a\nb", None]
    floats = rng.choice([0.0, -0.0, 1.5, -2.25, np.nan, np.inf, -np.inf], n)
    return pa.table({
        "k": pa.array(rng.integers(0, 20, n), pa.int32()),  # many duplicate keys
        "s": pa.array([words[i] for i in rng.integers(0, len(words), n)], pa.string()),
        "f": pa.array(floats, mask=rng.random(n) < 0.1),
        "b": pa.array([None if i % 7 == 0 else bool(i % 2) for i in rng.integers(0, 50, n)]),
        "t": pa.array(rng.integers(-10**12, 10**12, n), pa.timestamp("ms", tz="UTC")),
        "day": pa.array(rng.integers(0, 30000, n).astype("int32"), pa.date32()),
        "dec": pa.array([decimal.Decimal(int(i)) / 100 for i in rng.integers(-500, 500, n)], pa.decimal128(9, 2)),
        "blob": pa.array([bytes(rng.integers(0, 3, int(i))) for i in rng.integers(0, 4, n)], pa.binary()),
        "u": pa.array(rng.integers(0, 2**40, n), pa.uint64()),
        "cat": pa.array([words[i] for i in rng.integers(0, 5, n)]).dictionary_encode(),
        "tags": pa.array([[int(x) for x in rng.integers(0, 3, int(i))] for i in rng.integers(0, 3, n)],
                         pa.list_(pa.int64())),
    })


def batches(table: pa.Table, size: int, seed: int = 0) -> list[pa.RecordBatch]:
    """The rows shuffled, in batches of uneven sizes."""
    shuffled = table.take(np.random.default_rng(seed).permutation(table.num_rows))
    return shuffled.to_batches(max_chunksize=size)


def test_streamed_parquet_has_the_whole_table_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = mixed()
    monkeypatch.setattr(sorting, "ROW_GROUP_ROWS", 97)
    whole, small, big, reader = (tmp_path / f"{n}.parquet" for n in ("whole", "small", "big", "reader"))
    assert writers.write_parquet(whole, t, ["k"]) == t.num_rows
    writers.write_parquet(small, batches(t, 113), ["k"])  # fits: sorted in memory
    monkeypatch.setattr(sorting, "IN_MEMORY_BYTES", 0)
    assert writers.write_parquet(big, iter(batches(t, 61, seed=1)), ["k"]) == t.num_rows  # external sort
    schema = batches(t, 61)[0].schema
    writers.write_parquet(reader, pa.RecordBatchReader.from_batches(schema, iter(batches(t, 200, seed=2))), ["k"])
    ref = whole.read_bytes()
    assert pq.ParquetFile(whole).metadata.num_row_groups == 11
    for other in (small, big, reader):
        assert other.read_bytes() == ref, other.name
    assert list(tmp_path.iterdir()) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    back = pq.read_table(whole)
    assert back.schema.field("cat").type == pa.string()  # dictionaries are written decoded
    assert back.column("k").to_pylist() == sorted(t.column("k").to_pylist())


def test_stream_from_a_duckdb_relation_and_frames(tmp_path: Path, external: None) -> None:
    t = pa.table({"k": pa.array([5, 3, 9, 1, 3], pa.int64()), "v": ["e", "c", "i", "a", "b"]})
    whole, rel, frames = tmp_path / "w.parquet", tmp_path / "r.parquet", tmp_path / "f.parquet"
    writers.write_parquet(whole, t, ["k"])
    con = duckdb.connect()
    con.register("t", t)
    writers.write_parquet(rel, con.sql("SELECT * FROM t"), ["k"])
    df = t.to_pandas()
    writers.write_parquet(frames, (df.iloc[i:i + 2] for i in range(0, len(df), 2)), ["k"])
    assert rel.read_bytes() == whole.read_bytes() == frames.read_bytes()


def test_stream_of_batches_with_other_columns_fails_clearly(tmp_path: Path) -> None:
    parts = [pa.record_batch({"k": [1]}), pa.record_batch({"j": [2]})]
    with pytest.raises(ValueError, match="columns"):
        writers.write_parquet(tmp_path / "x.parquet", parts, ["k"])


def towns(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-141, -52, n), rng.uniform(42, 83, n)
    geoms = shapely.box(x, y, x + 0.01, y + 0.02)
    geoms[::50] = None
    geoms[7::50] = shapely.Point()  # empty
    geoms[3::25] = shapely.points(x[3::25], y[3::25])
    return gpd.GeoDataFrame({"id": pa.array(rng.permutation(n)).to_numpy(), "name": [f"t{i % 13}" for i in range(n)]},
                            geometry=geoms, crs="EPSG:4269")


def test_streamed_geoparquet_has_the_frame_bytes(tmp_path: Path, external: None) -> None:
    gdf = towns(1000)
    whole, frames, arrow = tmp_path / "w.parquet", tmp_path / "f.parquet", tmp_path / "a.parquet"
    writers.write_geoparquet(whole, gdf, ["id"])
    shuffled = gdf.iloc[np.random.default_rng(5).permutation(len(gdf))]
    writers.write_geoparquet(frames, (shuffled.iloc[i:i + 300] for i in range(0, len(gdf), 300)), ["id"])
    # pyogrio-style batches: WKB in a binary column (big-endian here: it is re-encoded), crs given
    attrs = pa.Table.from_pandas(pd.DataFrame(shuffled.drop(columns="geometry")), preserve_index=False)
    wkb = shapely.to_wkb(shuffled.geometry.values, byte_order=0)
    table = attrs.append_column("geometry", pa.array(wkb, pa.binary())).replace_schema_metadata(None)
    writers.write_geoparquet(arrow, table.to_batches(max_chunksize=128), ["id"], crs="EPSG:4269")
    assert frames.read_bytes() == whole.read_bytes() == arrow.read_bytes()
    geo = json.loads(pq.ParquetFile(whole).metadata.metadata[b"geo"])
    col = geo["columns"]["geometry"]
    assert col["geometry_types"] == ["Point", "Polygon"]
    assert col["covering"] == {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    present = [g for g in gdf.geometry if g is not None and not g.is_empty]
    assert col["bbox"] == pytest.approx(list(shapely.total_bounds(present)))
    back = gpd.read_parquet(whole)
    assert back.crs.to_epsg() == 4269 and len(back) == 1000
    bbox = pq.read_table(whole, columns=["bbox"]).column("bbox")
    assert bbox.null_count == 40  # None and empty geometries have no box
    # readers prune by area through the covering column (geopandas' bbox filter)
    some = gpd.read_parquet(whole, bbox=(-100, 50, -90, 60))
    assert 0 < len(some) < len(back)
    assert all(shapely.intersects(g, shapely.box(-100, 50, -90, 60)) for g in some.geometry)


def test_geometry_metadata_is_vectorised_and_the_same(tmp_path: Path) -> None:
    gdf = towns(200)
    meta = writers.geo_metadata(gdf.geometry.values, gdf.crs, "geometry")
    col = meta["columns"]["geometry"]
    present = [g for g in gdf.geometry if g is not None and not g.is_empty]
    assert col["geometry_types"] == sorted({g.geom_type for g in present})
    assert col["bbox"] == [float(b) for b in shapely.total_bounds(present)]
    z = writers.geo_metadata(np.array([shapely.Point(1, 2, 3), shapely.LinearRing([(0, 0), (1, 0), (1, 1)])]),
                             None, "g")["columns"]["g"]
    assert z["geometry_types"] == ["LineString", "Point Z"] and z["crs"] is None


def test_two_streamed_runs_give_the_same_bytes(tmp_path: Path, external: None) -> None:
    gdf = towns(500, seed=9)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path, seed in ((a, 1), (b, 2)):
        part = gdf.iloc[np.random.default_rng(seed).permutation(len(gdf))]
        writers.write_geoparquet(path, (part.iloc[i:i + 64] for i in range(0, len(part), 64)), ["id"])
    assert a.read_bytes() == b.read_bytes()
    assert logical.describe(a, "geoparquet")["rows"] == 500


def test_describe_reads_row_groups_and_hashes_as_the_whole_table(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    t = mixed(700).drop_columns(["cat"])
    monkeypatch.setattr(logical, "BATCH_ROWS", 50)
    ordered, shuffled = tmp_path / "o.parquet", tmp_path / "s.parquet"
    pq.write_table(logical.sort_table(t, ()), ordered, row_group_size=64)  # already in the logical order
    pq.write_table(t, shuffled, row_group_size=64)  # not: DuckDB's external sort puts it in order
    expect = logical.table_facts(pq.read_table(ordered).replace_schema_metadata(None))  # the whole-file way
    assert expect["logical_sha256"] == logical.table_facts(pq.read_table(shuffled))["logical_sha256"]
    for path in (ordered, shuffled):
        assert logical.parquet_facts(path) == expect, path.name
    seen = []
    monkeypatch.setattr(logical, "_external_order", lambda *a: seen.append(a) or iter(()))
    logical.parquet_facts(ordered)
    assert not seen  # an ordered file is hashed in its one pass


def test_check_explains_a_difference_far_into_a_file_batch_by_batch(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from d4c.build import check

    monkeypatch.setattr(check, "BATCH_ROWS", 100)
    t = pa.table({"k": pa.array(range(1000), pa.int64()), "v": [f"v{i}" for i in range(1000)]})
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(t, a, row_group_size=128)
    pq.write_table(t.set_column(1, "v", pa.array([*t.column("v").to_pylist()[:737], "X",
                                                  *t.column("v").to_pylist()[738:]])), b, row_group_size=300)
    assert check._first_row_difference(a, b, "parquet") == ["first differing row: 737, column 'v': 'v737' vs 'X'"]
    assert check._first_row_difference(a, a, "parquet") == ["rows: identical values"]


def test_diff_reads_parquet_lazily_with_the_tables_answers(tmp_path: Path) -> None:
    from d4c.diff import compare

    old = pa.table({"id": pa.array(range(3000), pa.int64()), "v": [f"v{i % 7}" for i in range(3000)]})
    new = old.slice(5).set_column(1, "v", pa.array([("X" if i % 500 == 0 else f"v{i % 7}") for i in range(5, 3000)]))
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    writers.write_parquet(a, old, ["id"])
    writers.write_parquet(b, new, ["id"])
    sa, sb = compare.read_table(a, "parquet"), compare.read_table(b, "parquet")
    assert isinstance(sa, compare.ParquetSource) and sa.num_rows == 3000
    assert compare.compare_rows(sa, sb, ["id"]) == compare.compare_rows(pq.read_table(a), pq.read_table(b), ["id"])
    assert compare.compare_rows(sa, sb, [])["only_old"] == 10
    base = compare.profile_manifest({})
    assert compare.profile_table(sa, base) == compare.profile_table(pq.read_table(a), base)


def test_logical_hash_of_a_struct_column_is_vectorised_and_exact() -> None:
    box = pa.array([{"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.0}, None,
                    {"xmin": 0.5, "ymin": None, "xmax": 1.0, "ymax": 1.0}], writers.BBOX_TYPE)
    t = pa.table({"k": pa.array([1, 2, 3], pa.int64()), "bbox": box})
    base = logical.logical_sha256(t)
    assert logical.logical_sha256(pa.concat_tables([t.slice(1), t.slice(0, 1)])) == base
    h = logical.LogicalHash(t.schema)
    for part in (t.slice(0, 1), t.slice(1, 1), t.slice(2)):
        h.update(part)
    assert h.hexdigest() == base
    moved = pa.array([{"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.5}, None,
                      {"xmin": 0.5, "ymin": None, "xmax": 1.0, "ymax": 1.0}], writers.BBOX_TYPE)
    assert logical.logical_sha256(t.set_column(1, "bbox", moved)) != base
    null_inside = pa.array([{"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.0}, None,
                            {"xmin": 0.5, "ymin": 0.0, "xmax": 1.0, "ymax": 1.0}], writers.BBOX_TYPE)
    assert logical.logical_sha256(t.set_column(1, "bbox", null_inside)) != base


def test_the_context_takes_a_stream_for_a_declared_output(tmp_path: Path, external: None) -> None:
    from d4c.build.context import BuildContext, OutputSpec

    out = tmp_path / "t.parquet"
    ctx = BuildContext("ca_x", "1.0.0", {}, {}, {"t": OutputSpec("t", "parquet", out, ("k",))}, 0)
    t = pa.table({"k": pa.array([3, 1, 2], pa.int64())})
    assert ctx.write_batches("t", iter(t.to_batches(max_chunksize=1))) == 3
    assert pq.read_table(out).column("k").to_pylist() == [1, 2, 3]


def test_pyogrio_open_arrow_streams_into_geoparquet(tmp_path: Path, external: None) -> None:
    import pyogrio

    gdf = towns(400, seed=4)
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)].reset_index(drop=True)  # GDAL keeps no empties
    src = tmp_path / "towns.fgb"
    pyogrio.write_dataframe(gdf, src, driver="FlatGeobuf")
    whole, streamed = tmp_path / "w.parquet", tmp_path / "s.parquet"
    writers.write_geoparquet(whole, pyogrio.read_dataframe(src), ["id"])
    with pyogrio.open_arrow(src, batch_size=50, use_pyarrow=True) as (meta, reader):  # as docs/contributing.md
        n = writers.write_geoparquet(streamed, reader, ["id"], crs=meta["crs"], geometry=meta["geometry_name"] or "wkb_geometry")
    assert n == len(gdf)
    a, b = pq.read_table(whole), pq.read_table(streamed)
    assert a.column("id").equals(b.column("id")) and a.column("bbox").equals(b.column("bbox"))
    assert geo_of(whole)["columns"]["geometry"]["crs"] == geo_of(streamed)["columns"][meta["geometry_name"] or "wkb_geometry"]["crs"]


def geo_of(path: Path) -> dict:
    return json.loads(pq.ParquetFile(path).metadata.metadata[b"geo"])
