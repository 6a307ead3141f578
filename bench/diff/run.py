"""Benchmark: the build diff's row comparison on a large keyed table, and its output size.

Two versions of an N-row table (default 2,000,000 rows, 6 columns) differ by 1% changed,
0.5% added and 0.5% removed rows. Measured side by side in one run, best of R, rounds
interleaved so other load falls on every contender alike:
  (a) compare_rows (DuckDB over the Arrow tables) vs the usual pandas outer merge with an
      indicator and a per-column comparison (ratio > 1: ours is faster)
  (b) compare_rows vs simply reading both Parquet files            (context: read is the floor)
  (c) the markdown of the full report, in bytes, vs GitHub's 1 MiB step-summary limit
Usage: python bench/diff/run.py [--rows 2000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _timing import measure
from d4c.diff import render, semver
from d4c.diff.compare import compare_profiles, compare_rows, profile_manifest, profile_table


def tables(n: int) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(42)
    ids = np.arange(n, dtype=np.int64)
    old = pa.table({"id": ids, "name": pa.array([f"place {i}" for i in ids]),
                    "pop": rng.integers(0, 1_000_000, n), "area": rng.random(n),
                    "code": rng.integers(0, 100, n).astype(np.int32), "wkb": pa.array([b"\x01" * 21] * n)})
    new = old.slice(n // 200)  # 0.5% removed at the start
    changed = rng.choice(new.num_rows, n // 100, replace=False)
    pop = new.column("pop").to_numpy().copy()
    pop[changed] += 1
    new = new.set_column(2, "pop", pa.array(pop))
    extra = old.slice(0, n // 200)
    extra = extra.set_column(0, "id", pa.array(np.arange(n, n + extra.num_rows, dtype=np.int64)))
    return old, pa.concat_tables([new, extra])


def pandas_compare(old: pa.Table, new: pa.Table) -> dict[str, Any]:
    """The common hand-written alternative: an outer merge on the key, then column by column."""
    o, n = old.to_pandas(), new.to_pandas()
    m = o.merge(n, on="id", how="outer", suffixes=("_o", "_n"), indicator=True)
    both = m[m["_merge"] == "both"]
    cols = [c for c in o.columns if c != "id"]
    diff = pd.concat([both[f"{c}_o"] != both[f"{c}_n"] for c in cols], axis=1).any(axis=1)
    return {"added": int((m["_merge"] == "right_only").sum()),
            "removed": int((m["_merge"] == "left_only").sum()), "changed": int(diff.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    old, new = tables(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        po, pn = Path(tmp) / "old.parquet", Path(tmp) / "new.parquet"
        pq.write_table(old, po)
        pq.write_table(new, pn)
        ours = compare_rows(old, new, ["id"])
        theirs = pandas_compare(old, new)
        assert (ours["added"], ours["removed"], ours["changed"]) == (
            theirs["added"], theirs["removed"], theirs["changed"]), (ours, theirs)
        t = measure({
            "read both (pyarrow)": lambda: (pq.read_table(po), pq.read_table(pn)),
            "compare_rows (duckdb)": lambda: compare_rows(old, new, ["id"]),
            "pandas outer merge": lambda: pandas_compare(old, new),
        }, args.repeat)
        art = compare_profiles(profile_table(pq.read_table(po), profile_manifest({})),
                               profile_table(pq.read_table(pn), profile_manifest({})))
        art.update(status="compared", row_diff=ours)
        report = {"dataset": "ca_bench_table", "version": "1.1.0", "against": "1.0.0", "note": None,
                  "artifacts": {"table": art}, "sources": [], "environment": [], "params": [],
                  "reproducibility": None, "reproduce": ["d4c diff ca_bench_table"],
                  "semver": semver.verdict("1.0.0", "1.1.0", {"table": art})}
        md = render.markdown(report)
    print(f"rows {args.rows:,} old / {new.num_rows:,} new; added {ours['added']:,}, "
          f"removed {ours['removed']:,}, changed {ours['changed']:,} (both methods agree)")
    for name, sec in t.items():
        print(f"  {name:<24} {sec:8.3f} s")
    cmp, pdm, rd = t["compare_rows (duckdb)"], t["pandas outer merge"], t["read both (pyarrow)"]
    print(f"(a) pandas merge / compare_rows     {pdm / cmp:6.2f}x   (> 1: compare_rows is faster)")
    print(f"(b) compare_rows / read both files  {cmp / rd:6.2f}x   (context)")
    print(f"(c) markdown {len(md.encode()):,} bytes = {len(md.encode()) / 2**20:.4%} of the 1 MiB "
          f"step-summary limit; verdict {report['semver']['required']} vs bump {report['semver']['bump']}")


if __name__ == "__main__":
    main()
