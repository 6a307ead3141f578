"""The --check difference report explains Parquet differences, not just bytes."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from d4c.build import check, sorting, writers


def test_footer_metadata_difference_is_named(tmp_path: Path) -> None:
    t = pa.table({"k": [1, 2]})
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    sorting.atomic_write_parquet(t, a, {"geo": '{"version":"1.1.0","when":"2026-11-26T10:00"}'})
    sorting.atomic_write_parquet(t, b, {"geo": '{"version":"1.1.0","when":"2026-11-26T11:00"}'})
    report = check.explain_parquet(a, b)
    assert report[0].startswith("footer metadata 'geo' differs at byte 39")
    assert report[-1] == "rows: identical values"


def test_schema_row_groups_and_rows_are_compared(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    writers.write_parquet(a, pa.table({"k": [1, 2, 3], "v": ["x", "y", "z"]}), ["k"])
    writers.write_parquet(b, pa.table({"k": [1, 2, 3], "v": ["x", "Y", "z"]}), ["k"])
    pq.write_table(pa.table({"k": [1, 2, 3], "v": [1, 2, 3]}), c, row_group_size=1)
    assert check.explain_parquet(a, b)[-1] == "first differing row: 1, column 'v': 'y' vs 'Y'"
    report = "\n".join(check.explain(a, c, "parquet"))
    assert "schema differs" in report and "row groups: 1 vs 3" in report
    assert check.first_byte_difference(a, a) is None
    diffs = check.compare(tmp_path, tmp_path, [("a.parquet", "parquet"), ("missing.csv", "csv")])
    assert diffs == [("missing.csv", ["missing in first build"])]
