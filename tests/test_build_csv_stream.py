"""The CSV writer streams: a stream of batches, sorted by DuckDB's external sort and written
one row group at a time, gives the bytes of the whole-table write, for every type a table
holds (test_build_stream's mixed table: NaN, -0.0, nulls, Unicode, newlines, dictionaries)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from d4c.build import sorting, writers
from test_build_stream import batches, mixed


def test_streamed_csv_has_the_whole_table_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = mixed(1500)
    monkeypatch.setattr(sorting, "ROW_GROUP_ROWS", 97)  # many row groups
    whole, small, big, rel = (tmp_path / f"{n}.csv" for n in ("whole", "small", "big", "rel"))
    assert writers.write_csv(whole, t, ["k"]) == t.num_rows
    assert writers.write_csv(small, iter(batches(t, 113)), ["k"]) == t.num_rows  # fits: sorted in memory
    monkeypatch.setattr(sorting, "IN_MEMORY_BYTES", 0)
    assert writers.write_csv(big, iter(batches(t, 61, seed=1)), ["k"]) == t.num_rows  # the external sort
    con = duckdb.connect()
    shuffled = pa.Table.from_batches(batches(t.drop_columns(["cat", "tags"]), 500, seed=2))
    writers.write_csv(rel, con.from_arrow(shuffled), ["k"])  # a DuckDB relation, read as it runs
    ref = whole.read_bytes()
    assert small.read_bytes() == ref and big.read_bytes() == ref
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "rel.csv", "small.csv", "whole.csv"]  # no spill left
    # read back as CSV: the header, every row, sorted by the key
    rows = list(csv.reader(io.StringIO(ref.decode("utf-8"), newline="")))
    assert rows[0] == t.column_names and len(rows) == t.num_rows + 1
    keys = [int(r[0]) for r in rows[1:]]
    assert keys == sorted(keys)
    monkeypatch.setattr(sorting, "IN_MEMORY_BYTES", 10**12)
    plain = tmp_path / "plain.csv"
    writers.write_csv(plain, t.drop_columns(["cat", "tags"]), ["k"])
    assert rel.read_bytes() == plain.read_bytes()
