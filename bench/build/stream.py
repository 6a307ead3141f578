"""Builds bigger than memory: GeoParquet written from record batches, at 1M and 5M rows.

A synthetic StatCan-like table (shuffled ids, a code, two numbers, a small polygon each)
made batch by batch from a seed, so no process ever holds it all unless it has to. Each
measurement runs in a fresh process of its own (peak RSS = that process's ru_maxrss),
side by side in one run:
  bare      pq.write_table of the generated rows at pyarrow's defaults (the table already in memory),
            and again at d4c's PARQUET_SETTINGS (what the compression alone costs)
  same      like with like: pq.write_table of the very table the streamed write wrote (sorted, with
            its bbox covering column), read into memory first, at d4c's settings and at pyarrow's defaults
  gen       only making the batches (what the streamed write spends before d4c sees a row)
  stream    writers.write_geoparquet from the batches: external sort, WKB, bbox covering
  describe  logical.describe of the written file (rows, nulls, logical hash, row group by row group)
  frame     a whole GeoDataFrame handed to write_geoparquet: RSS added over the frame itself
and checks that two streamed runs, and the whole-table writer, give the same bytes.
Run: .venv/bin/python bench/build/stream.py [ROWS ...]   (default 1000000 5000000)
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np
import pyarrow as pa

BATCH = 100_000
CRS = "EPSG:3347"  # Statistics Canada Lambert


def batches(rows: int):
    import shapely

    ids = np.random.default_rng(7).permutation(rows)
    for start in range(0, rows, BATCH):
        rng = np.random.default_rng(start)
        n = min(BATCH, rows - start)
        x, y = rng.uniform(3.6e6, 9.0e6, n), rng.uniform(0.6e6, 4.5e6, n)
        wkb = shapely.to_wkb(shapely.box(x, y, x + rng.uniform(50, 5000, n), y + rng.uniform(50, 5000, n)),
                             byte_order=1, flavor="iso")
        yield pa.record_batch({
            "id": pa.array(ids[start:start + n], pa.int64()),
            "dguid": pa.array([f"2021S0512{i:08d}" for i in ids[start:start + n]]),
            "pop": pa.array(rng.integers(0, 5000, n), pa.int32()),
            "area_km2": pa.array(rng.random(n) * 100),
            "geometry": pa.array(wkb, pa.binary()),
        })


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Timed:
    """Wall and CPU seconds (every thread) of a block: on a shared machine the wall time swings
    with the neighbours' load, the CPU time much less."""

    def __enter__(self) -> Self:
        self.t, self.c = time.perf_counter(), cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s, self.cpu = time.perf_counter() - self.t, cpu_s() - self.c

    def result(self) -> dict[str, float]:
        return {"s": self.s, "cpu_s": self.cpu}


def child(mode: str, rows: int, out: str) -> dict[str, float]:
    from d4c.build import logical, sorting, writers

    if mode in ("bare", "bare-d4c"):
        import pyarrow.parquet as pq

        table = pa.Table.from_batches(list(batches(rows)))
        settings = {k: v for k, v in sorting.PARQUET_SETTINGS.items()} if mode == "bare-d4c" else {}
        with Timed() as tm:
            pq.write_table(table, out, **settings)
        return tm.result()
    if mode in ("same", "same-defaults"):  # `out` names the streamed file: its table, written bare
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        settings = dict(sorting.PARQUET_SETTINGS) if mode == "same" else {}
        with Timed() as tm:
            pq.write_table(table, out + ".bare", **settings)
        os.unlink(out + ".bare")
        return tm.result()
    if mode == "gen":
        with Timed() as tm:
            for _ in batches(rows):
                pass
        return tm.result()
    if mode == "stream":
        with Timed() as tm:
            writers.write_geoparquet(Path(out), batches(rows), ["id"], crs=CRS)
        return tm.result()
    if mode == "whole":  # the whole-table writer on the same rows (a GeoDataFrame)
        import geopandas as gpd

        table = pa.Table.from_batches(list(batches(rows)))
        gdf = gpd.GeoDataFrame(table.drop_columns(["geometry"]).to_pandas(),
                               geometry=gpd.GeoSeries.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)),
                               crs=CRS)
        del table
        writers.write_geoparquet(Path(out), gdf, ["id"])
        return {}
    if mode == "describe":
        t = time.perf_counter()
        logical.describe(Path(out), "geoparquet")
        return {"s": time.perf_counter() - t}
    if mode == "frame":
        import gc

        import geopandas as gpd
        import psutil

        proc = psutil.Process()
        before = proc.memory_info().rss
        table = pa.Table.from_batches(list(batches(rows)))
        gdf = gpd.GeoDataFrame(table.drop_columns(["geometry"]).to_pandas(),
                               geometry=gpd.GeoSeries.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)),
                               crs=CRS)
        del table
        gc.collect()
        frame = proc.memory_info().rss - before
        resource_base = proc.memory_info().rss
        # the peak from here on: psutil polls nothing, so a thread samples RSS while writing
        import threading

        top = [resource_base]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                top[0] = max(top[0], proc.memory_info().rss)
                time.sleep(0.01)

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        t = time.perf_counter()
        writers.write_geoparquet(Path(out), gdf, ["id"])
        took = time.perf_counter() - t
        done.set()
        th.join()
        return {"s": took, "frame_mib": frame / 2**20, "added_mib": (top[0] - resource_base) / 2**20}
    raise SystemExit(f"unknown mode {mode}")


def run(mode: str, rows: int, out: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(rows), str(out)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{mode} at {rows:,} rows failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main(sizes: list[int]) -> None:
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; batches of {BATCH:,} rows; "
          "each figure from a process of its own")
    with tempfile.TemporaryDirectory(dir=os.environ.get("D4C_BENCH_TMP")) as tmp:
        for rows in sizes:
            d = Path(tmp) / str(rows)
            d.mkdir()
            bare = run("bare", rows, d / "bare.parquet")
            bare_z = run("bare-d4c", rows, d / "bare-d4c.parquet")
            gen = run("gen", rows, d / "x")
            s1 = run("stream", rows, d / "s1.parquet")
            s2 = run("stream", rows, d / "s2.parquet")
            desc = run("describe", rows, d / "s1.parquet")
            same = run("same", rows, d / "s1.parquet")
            same_def = run("same-defaults", rows, d / "s1.parquet")
            same_runs = sha(d / "s1.parquet") == sha(d / "s2.parquet")
            best = min(s1["s"], s2["s"])
            print(f"{rows:>9,} rows: bare pq.write_table {bare['s']:.2f} s ({bare['rss_mib']:,.0f} MiB peak, "
                  f"the table in memory); streamed write_geoparquet {best:.2f} s, peak RSS "
                  f"{max(s1['rss_mib'], s2['rss_mib']):,.0f} MiB; ratio {best / bare['s']:.2f}x "
                  f"({(best - gen['s']) / bare['s']:.2f}x without the {gen['s']:.2f} s of making the batches); "
                  f"against a bare write at d4c's Parquet settings {bare_z['s']:.2f} s: "
                  f"{best / bare_z['s']:.2f}x; like with like (the same output table written bare): "
                  f"{best / same['s']:.2f}x at d4c's settings ({same['s']:.2f} s), "
                  f"{best / same_def['s']:.2f}x at pyarrow's defaults ({same_def['s']:.2f} s); "
                  f"describe {desc['s']:.2f} s, peak RSS {desc['rss_mib']:,.0f} MiB; "
                  f"CPU seconds: stream {min(s1['cpu_s'], s2['cpu_s']):.2f}, "
                  f"same-table bare at d4c's settings {same['cpu_s']:.2f}, at pyarrow's defaults {same_def['cpu_s']:.2f}, "
                  f"gen {gen['cpu_s']:.2f}; load average now {os.getloadavg()[0]:.2f}; "
                  f"two runs identical: {same_runs}; file {os.path.getsize(d / 's1.parquet') / 2**20:,.0f} MiB "
                  f"(bare {os.path.getsize(d / 'bare.parquet') / 2**20:,.0f} MiB)")
            if rows == sizes[0]:
                run("whole", rows, d / "w.parquet")
                fr = run("frame", rows, d / "f.parquet")
                print(f"{'':>9}       whole GeoDataFrame: same bytes as the stream: "
                      f"{sha(d / 'w.parquet') == sha(d / 's1.parquet')}; the frame {fr['frame_mib']:,.0f} MiB, "
                      f"write_geoparquet adds {fr['added_mib']:,.0f} MiB at its peak "
                      f"({fr['added_mib'] / fr['frame_mib']:.2f} copies) in {fr['s']:.2f} s")
            for p in d.iterdir():
                p.unlink()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        result = child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        print(json.dumps({**result, "rss_mib": peak_mib()}))
    else:
        main([int(a) for a in sys.argv[1:]] or [1_000_000, 5_000_000])
