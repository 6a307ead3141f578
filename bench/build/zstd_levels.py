"""bench/build/zstd_levels: which zstd level the Parquet writers should use, measured.

Each table is written with d4c's fixed Parquet settings (d4c.build.sorting.PARQUET_SETTINGS)
at zstd levels 1, 3, 6, 9, 12 and 15 (levels above 15 cost far more and are left out), and
read back once; size, write time and read time per level, min and median of N rounds,
with the load average. Tables:

- the demos' Parquet outputs, built once in a temporary git copy of this project (small:
  they show the per-file overhead, not the level's effect);
- a synthetic StatCan-like table: dissemination-area-like polygons that tile the plane
  (neighbours share their boundary points exactly, 20-60 vertices of full-precision lon/lat,
  as reprojected boundaries have) in DGUID order, with the attribute columns such tables
  carry (DGUID, province, names that repeat, counts, areas, densities).

    .venv/bin/python bench/build/zstd_levels.py [--rows 100000] [--rounds 3] [--no-demos]
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from d4c.build.sorting import PARQUET_SETTINGS

REPO = Path(__file__).resolve().parents[2]
LEVELS = (1, 3, 6, 9, 12, 15)


def _edge(a: tuple[int, int], b: tuple[int, int], lattice: np.ndarray, seed: int) -> np.ndarray:
    """The wiggly boundary between two lattice vertices: the same points (bytes) for both
    polygons that share it, as in a real tessellation; excludes the end point."""
    lo, hi = (a, b) if a <= b else (b, a)
    rng = np.random.default_rng([seed, *lo, *hi])
    n = int(rng.integers(4, 15))
    t = np.sort(rng.uniform(0, 1, n))
    p, q = lattice[lo], lattice[hi]
    pts = p + np.outer(t, q - p) + rng.normal(0, 0.0004, (n, 2))
    pts = np.vstack([p, pts])
    return pts if lo == a else np.vstack([q, pts[:0:-1]])


def statcan_like(rows: int, seed: int = 2021) -> pa.Table:
    """Polygons and attributes shaped like a StatCan dissemination-area table: a jittered
    lattice of cells whose neighbours share their boundary points exactly (a tessellation),
    full-precision lon/lat, rows in DGUID order (row by row across the lattice)."""
    import shapely

    rng = np.random.default_rng(seed)
    cols = int(np.sqrt(rows)) + 1
    lines = -(-rows // cols)
    grid = np.stack(np.meshgrid(np.arange(lines + 1), np.arange(cols + 1), indexing="ij"), -1)
    lattice = (np.array([43.0, -80.0]) + grid * 0.01 + rng.normal(0, 0.002, grid.shape))[..., ::-1]
    polys = []
    for i in range(rows):
        r, c = divmod(i, cols)
        corners = [(r, c), (r, c + 1), (r + 1, c + 1), (r + 1, c)]
        ring = np.vstack([_edge(corners[k], corners[(k + 1) % 4], lattice, seed) for k in range(4)])
        polys.append(shapely.Polygon(ring))
    wkb = shapely.to_wkb(np.array(polys, dtype=object), byte_order=1, flavor="iso")
    pruid = np.sort(rng.choice([10, 11, 12, 13, 24, 35, 46, 47, 48, 59, 60, 61, 62], rows,
                               p=[.02, .01, .03, .03, .23, .38, .04, .04, .11, .09, .01, .005, .005]))
    names = np.array([f"Subdivision {i:04d}" for i in range(5000)])
    csd = names[np.sort(rng.integers(0, 5000, rows))]
    population = rng.negative_binomial(5, 0.01, rows).astype(np.int32)
    area = np.round(shapely.area(np.array(polys, dtype=object)) * 111.0 * 80.0, 4)
    return pa.table({
        "dguid": pa.array([f"2021S0512{p:02d}{i:06d}" for i, p in enumerate(pruid)]),
        "pruid": pa.array(pruid.astype(np.int16)),
        "csd_name": pa.array(csd),
        "population": pa.array(population),
        "dwellings": pa.array((population * rng.uniform(0.3, 0.5, rows)).astype(np.int32)),
        "land_area_km2": pa.array(area),
        "density_per_km2": pa.array(np.round(population / np.maximum(area, 1e-6), 1)),
        "geometry": pa.array(wkb, pa.binary()),
    })


def demo_tables(where: Path) -> dict[str, pa.Table]:
    """Every Parquet output of the demos, built with the real pipeline in a git copy."""
    root = where / "repo"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], cwd=root, check=True)
    os.environ.update({"D4C_REPO": str(root), "D4C_CACHE": str(where / "cache")})
    from d4c.build.pipeline import BuildOptions, build
    from d4c.recipe import load_id
    out: dict[str, pa.Table] = {}
    for recipe in sorted((root / "datasets").glob("*/recipe.yaml")):
        rcp = load_id(recipe.parent.name, root)
        dest = where / "build" / rcp.id
        build(rcp, root, dest, BuildOptions())
        for parquet in sorted(dest.glob("*.parquet")):
            out[parquet.name] = pq.read_table(parquet)
    return out


def measure_levels(name: str, table: pa.Table, rounds: int) -> None:
    settings = {k: v for k, v in PARQUET_SETTINGS.items() if k != "compression_level"}
    rows: dict[int, tuple[int, list[float], list[float]]] = {}
    for _ in range(rounds):
        for level in LEVELS:  # interleaved: drift hits every level alike
            sink = io.BytesIO()
            start = time.perf_counter()
            pq.write_table(table, sink, compression_level=level, **settings)
            wrote = time.perf_counter() - start
            start = time.perf_counter()
            pq.read_table(io.BytesIO(sink.getvalue()))
            read = time.perf_counter() - start
            size, w, r = rows.get(level, (0, [], []))
            rows[level] = (len(sink.getvalue()), [*w, wrote], [*r, read])
    load = os.getloadavg()
    raw = table.nbytes
    print(f"\n{name}: {table.num_rows:,} rows, {raw / 2**20:.1f} MiB in Arrow; {rounds} rounds, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  {'level':>5} {'bytes':>12} {'vs 9':>6} {'write min s':>11} {'median':>7} "
          f"{'vs 9':>6} {'read min s':>10}")
    size9, w9 = rows[9][0], min(rows[9][1])
    for level, (size, w, r) in rows.items():
        print(f"  {level:5d} {size:12,d} {size / size9:6.3f} {min(w):11.3f} {statistics.median(w):7.3f} "
              f"{min(w) / w9:6.2f} {min(r):10.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-demos", action="store_true")
    args = ap.parse_args()
    print(f"fixed settings: {PARQUET_SETTINGS}")
    if not args.no_demos:
        with tempfile.TemporaryDirectory(prefix="d4c-bench-zstd-") as tmp:
            for name, table in demo_tables(Path(tmp)).items():
                measure_levels(name, table, args.rounds)
    measure_levels("StatCan-like polygons", statcan_like(args.rows), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
