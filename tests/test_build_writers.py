"""Deterministic writers and the logical content hash."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from d4c.build import logical, writers


def frame(order: list[int]) -> pd.DataFrame:
    rows = {"pruid": [10, 24, 35, 62], "name": ["NL", "QC", "ON", "NU"], "v": [1.5, None, 2.25, 0.1]}
    return pd.DataFrame({k: [v[i] for i in order] for k, v in rows.items()})


def test_parquet_bytes_do_not_depend_on_row_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    writers.write_parquet(a, frame([0, 1, 2, 3]), ["pruid"])
    writers.write_parquet(b, frame([3, 1, 0, 2]), ["pruid"])
    assert a.read_bytes() == b.read_bytes()
    meta = pq.ParquetFile(a).metadata
    assert meta.metadata is None  # no pandas, no ARROW:schema, nothing we did not put there
    assert pq.read_table(a).column("pruid").to_pylist() == [10, 24, 35, 62]
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_geoparquet_metadata_is_ours_and_readable(tmp_path: Path) -> None:
    df = frame([2, 0, 3, 1])
    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy([-79.4, -52.7, -68.5, -71.2], [43.7, 47.6, 63.7, 46.8]),
                           crs="EPSG:4326")
    path = tmp_path / "g.parquet"
    writers.write_geoparquet(path, gdf, ["pruid"])
    kv = pq.ParquetFile(path).metadata.metadata
    assert list(kv) == [b"geo"]
    geo = json.loads(kv[b"geo"])
    col = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and "creator" not in geo
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Point"]
    assert col["bbox"] == [-79.4, 43.7, -52.7, 63.7]
    assert col["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    back = gpd.read_parquet(path)
    assert back.crs.to_epsg() == 4326
    assert back["pruid"].tolist() == [10, 24, 35, 62]
    assert shapely.equals(back.geometry.iloc[0], shapely.Point(-52.7, 47.6))
    rows = duckdb.sql(f"SELECT pruid, name FROM read_parquet('{path}') ORDER BY pruid").fetchall()
    assert rows == [(10, "NL"), (24, "QC"), (35, "ON"), (62, "NU")]
    facts = logical.describe(path, "geoparquet")
    assert facts["crs"] == "EPSG:4326" and facts["geometry_types"] == ["Point"] and facts["rows"] == 4


def test_csv_is_utf8_lf_sorted_and_quoted_minimally(tmp_path: Path) -> None:
    df = pd.DataFrame({"k": [2, 1], "name": ["Île, PE", 'say "hi"'], "x": [0.1, None]})
    path = tmp_path / "t.csv"
    writers.write_csv(path, df, ["k"])
    assert path.read_bytes() == 'k,name,x\n1,"say ""hi""",\n2,"Île, PE",0.1\n'.encode()


def test_logical_hash_ignores_encoding_but_not_values(tmp_path: Path) -> None:
    table = pa.table({"k": pa.array([3, 1, 2], pa.int64()), "s": ["c", "a", "b"]})
    ours, other, changed = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    writers.write_parquet(ours, table, ["k"])
    pq.write_table(table, other, compression="snappy", use_dictionary=False)  # unsorted, other codec
    writers.write_parquet(changed, table.set_column(1, "s", pa.array(["c", "a", "B"])), ["k"])
    a, b, c = (logical.describe(p, "parquet") for p in (ours, other, changed))
    assert ours.read_bytes() != other.read_bytes()
    assert a["logical_sha256"] == b["logical_sha256"]
    assert a["schema_fingerprint"] == c["schema_fingerprint"]
    assert a["logical_sha256"] != c["logical_sha256"]
    assert a["columns"] == [{"name": "k", "type": "int64", "nulls": 0}, {"name": "s", "type": "string", "nulls": 0}]


def test_logical_hash_separates_null_from_empty_and_ignores_chunking() -> None:
    t = pa.table({"k": pa.array([2, None, 1], pa.int64()), "s": ["x", None, "yy"],
                  "ok": [True, None, False], "d": pa.array([1, None, 3], pa.date32())})
    base = logical.logical_sha256(t)
    assert logical.logical_sha256(pa.concat_tables([t.slice(2), t.slice(0, 2)])) == base
    assert logical.logical_sha256(t.set_column(1, "s", pa.array(["x", "", "yy"]))) != base
    assert logical.logical_sha256(t.set_column(0, "k", pa.array([2, 0, 1], pa.int64()))) != base
    assert logical.logical_sha256(t.set_column(2, "ok", pa.array([True, False, False]))) != base
    assert logical.logical_sha256(t.rename_columns(["k", "s", "ok", "day"])) != base
