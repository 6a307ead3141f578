"""Sharded vs. unsharded: the same build as one process and as 2 shards in 2 local processes.

Makes a scratch git copy of the repository with a generated dataset: ROWS points in PARTS
CSV files kept in git, `shards: {by: source_file, max: 2}`, one GeoParquet output sorted
by id. Then, interleaved, best of REPEAT each: `d4c build ID --whole` and
`d4c build ID --jobs 2` (2 shards at once, then the reduce), each in a fresh process.
Prints wall time, the peak RSS of the d4c process itself (the reduce runs there) and of
its biggest child (a transform: RUSAGE_CHILDREN), the load average, and checks the two
artifacts are the same bytes. Both builds run with --no-sandbox: getrusage does not see a
worker inside bubblewrap's pid namespace (it reports ~100 MiB for a 656 MiB transform),
and the sandbox does not change what the transform itself holds.
Run: .venv/bin/python bench/shards/run.py [ROWS]
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

REPO = Path(__file__).resolve().parents[2]
DS = "ca_bench_sharded-points"
PARTS, REPEAT = 4, 2
TRANSFORM = '''import geopandas as gpd
import pyarrow as pa
import pyarrow.csv as pacsv

TYPES = {"id": pa.int64(), "x": pa.float64(), "y": pa.float64(), "v": pa.float64()}


def build(ctx):
    tables = [pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(column_types=TYPES))
              for _, p in ctx.shard_files()]
    df = pa.concat_tables(tables).to_pandas()
    ctx.write_geoparquet("points", gpd.GeoDataFrame(df.drop(columns=["x", "y"]),
                                                    geometry=gpd.points_from_xy(df["x"], df["y"]), crs="EPSG:4326"))
'''
# One d4c command in a fresh child: its wall time, the peak RSS of the d4c process itself
# (fetch, hashing, the reduce) and of its biggest child (a sandboxed transform).
PROBE = '''import contextlib, io, json, resource, sys, time
from d4c.cli import main
t = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    rc = main(sys.argv[1:])
wall = time.perf_counter() - t
print(json.dumps({"rc": rc, "wall": wall, "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
'''


def scratch_repo(root: Path, rows: int) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode()
    for rel in filter(None, files.split("\0")):
        if (REPO / rel).is_file() and not rel.startswith(("datasets/", "releases/")):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    folder = root / "datasets" / DS / "sources"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    ids = rng.permutation(rows)
    sources = []
    for k, part in enumerate(np.array_split(ids, PARTS)):
        path = folder / f"part-{k}.csv"
        pacsv.write_csv(pa.table({"id": part, "x": rng.uniform(-141, -52, len(part)),
                                  "y": rng.uniform(41, 83, len(part)), "v": rng.normal(size=len(part))}), path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        sources.append(f"  - {{name: part-{k}, path: sources/part-{k}.csv, sha256: {sha}, "
                       f"size: {path.stat().st_size}}}\n")
    (folder.parent / "transform.py").write_text(TRANSFORM)
    (folder.parent / "recipe.yaml").write_text(
        f"id: {DS}\nversion: 1.0.0\ntitle: {{en: Bench points, fr: Points de banc}}\n"
        "description: {en: Generated points., fr: Points générés.}\nlicense: CC0-1.0\n"
        "creators: [{name: Data for Canada}]\nsources:\n" + "".join(sources)
        + "transform: {python: transform.py:build}\nshards: {by: source_file, max: 2}\nreduce: {method: concat}\n"
        "outputs: [{name: points, format: geoparquet, sort_by: [id]}]\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], cwd=root, check=True)


def run(root: Path, args: list[str]) -> dict[str, float]:
    env = {**os.environ, "D4C_REPO": str(root), "D4C_CACHE": str(root / ".cache")}
    proc = subprocess.run([sys.executable, "-c", PROBE, "build", DS, *args], env=env,
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(proc.stdout)
    if result["rc"]:
        raise SystemExit(f"d4c build {' '.join(args)} failed (exit {result['rc']})")
    return result


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="d4c-bench-shards-") as tmp:
        root = Path(tmp) / "repo"
        scratch_repo(root, rows)
        best: dict[str, dict[str, float]] = {}
        for _ in range(REPEAT):
            for name, args in (("unsharded", ["--whole"]), ("2 shards, 2 processes", ["--jobs", "2"])):
                out = root / "out" / name.split()[0]
                shutil.rmtree(out, ignore_errors=True)
                r = run(root, [*args, "--no-sandbox", "--out", str(out)])
                if name not in best or r["wall"] < best[name]["wall"]:
                    best[name] = r
        files = [next((root / "out" / n).glob("*.parquet")).read_bytes() for n in ("unsharded", "2")]
        load = os.getloadavg()
        print(f"{rows:,} points in {PARTS} CSV files, best of {REPEAT} (load average {load[0]:.2f}, "
              f"{os.cpu_count()} CPUs)")
        for name, r in best.items():
            print(f"  {name:24s} wall {r['wall']:6.2f} s   peak RSS: d4c process {r['self_kib'] / 1024:6.1f} MiB, "
                  f"biggest transform {r['worker_kib'] / 1024:6.1f} MiB")
        ratio = best["2 shards, 2 processes"]["wall"] / best["unsharded"]["wall"]
        print(f"  sharded / unsharded wall time: {ratio:.2f}; artifacts identical: {files[0] == files[1]}")


if __name__ == "__main__":
    main()
