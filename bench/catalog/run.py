"""Catalog benchmark: the CLI build from releases/ beside a bare pyarrow write and two peers.

At each size (10k and 100k versions by default; 100 versions per dataset, varied asset
sets), every figure from a process of its own (peak RSS from wait4), min and median of N,
with the load average when it was taken:
- `d4c catalog build` from record files on disk (the CLI path: loading, mapping, writing);
- bare pyarrow at its defaults: the same STAC items as NDJSON -> pyarrow.json -> Parquet;
- stac-geoparquet's writer (parse_stac_ndjson_to_parquet) and rustac (`rustac translate`),
  on the same items as NDJSON;
- one append (`append_record`, timed inside its process) against the build: the held-out
  last version of the last dataset, and a new version of the middle one;
- the point query: `d4c catalog query --dataset` (a whole CLI run), DuckDB on a fresh
  connection reading every column of one dataset, and pyarrow over HTTP Range (bytes
  fetched, footer size);
then time ~ n^k between sizes. Goals (issue 16): k <= 1.05, peak RSS <= 2 GiB at 1M,
<= 0.5x the best peer, an append <= 0.05x a rebuild at 100k, the point query at 1M <= 1.5x
the 10k figure.

Run: .venv/bin/python bench/catalog/run.py [--sizes 10000 100000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from d4c.catalog.build import paused_gc
from d4c.catalog.items import items_from_records
from d4c.catalog.query import COLUMNS, open_remote, read_remote

OUTPUT_NAMES = ["boundaries", "points", "table", "table-csv", "tiles", "dem", "lines",
                "centroids", "attributes", "hexes", "grid", "summary"]
FORMATS = {"boundaries": "geoparquet", "points": "geoparquet", "table": "parquet",
           "table-csv": "csv", "tiles": "pmtiles", "dem": "cog", "lines": "flatgeobuf",
           "centroids": "geoparquet", "attributes": "parquet", "hexes": "geoparquet",
           "grid": "cog", "summary": "csv"}
EXT = {"geoparquet": "parquet", "parquet": "parquet", "csv": "csv", "pmtiles": "pmtiles",
       "cog": "tif", "flatgeobuf": "fgb"}
TARGETS = ["source-coop", "d4c-store", "zenodo", "internet-archive", "github"]


def synthetic_record(ds: int, version: str, rng: random.Random) -> dict[str, Any]:
    """A realistic record: 1-3 outputs from 12 names, 1-4 mirrors, torrent, manifest, bundle."""
    did = f"ca_src{ds % 37}_dataset-{ds:04d}"
    outputs = rng.sample(OUTPUT_NAMES, rng.randint(1, 3))
    mirrors = rng.sample(TARGETS, rng.randint(1, 4))
    base = f"{did}_v{version}"
    x0, y0 = -141 + (ds % 80), 42 + (ds % 30)
    files, outs = [], []

    def entry(role: str, name: str, file: str, size: int) -> dict[str, Any]:
        digest = hashlib.sha256(file.encode()).hexdigest()
        return {"role": role, "name": name, "file": file, "size": size, "sha256": digest,
                "md5": digest[:32], "media_type": "application/octet-stream",
                "urls": {t: f"https://{t}.example.org/{did}/v{version}/{file}" for t in mirrors}}

    for name in outputs:
        fmt = FORMATS[name]
        file = f"{base}_{name}.{EXT[fmt]}" if len(outputs) > 1 else f"{base}.{EXT[fmt]}"
        data = entry("data", name, file, rng.randint(10**5, 10**9))
        outs.append({"name": name, "file": file, "format": fmt, "rows": 1000, "crs": "EPSG:4326",
                     "bbox": [float(x0), float(y0), x0 + 5.5, y0 + 3.25], "columns": [],
                     "media_type": data["media_type"], "size": data["size"],
                     "sha256": data["sha256"], "md5": data["md5"]})
        files.append(data)
        files.append(entry("torrent", name, file + ".torrent", rng.randint(500, 5000)))
    files.append(entry("manifest", "manifest", f"{base}_manifest.json", 4000))
    files.append(entry("bundle", "bundle", f"{base}_source.tar.gz", 90000))
    return {
        "record_version": 1, "id": did, "version": version,
        "released_at": f"20{20 + ds % 6}-0{1 + ds % 9}-1{ds % 10}T12:00:00Z",
        "manifest": {"dataset": {"id": did, "version": version,
                                 "recipe_path": f"datasets/{did}/recipe.yaml"},
                     "source_date_epoch": 1767225600, "sources": [],
                     "environment": {"python": "3.11.7",
                                     "packages": {"pyarrow": "26.0.1", "geopandas": "1.2.0"}},
                     "outputs": outs},
        "doi": f"10.5281/zenodo.{ds * 1000 + len(version)}", "concept_doi": f"10.5281/zenodo.{ds}",
        "github_release": f"https://github.com/dataforcanada/d4c/releases/tag/{did}/v{version}",
        "files": files, "torrents": [], "sources": [],
        "metadata": {
            "title": {"en": f"Dataset {ds} of Canada", "fr": f"Jeu de données {ds} du Canada"},
            "description": {"en": "Synthetic benchmark dataset.", "fr": "Jeu de données synthétique."},
            "license": "CC-BY-4.0", "keywords": ["benchmark", f"k{ds % 50}"],
            "creators": [{"name": "Data for Canada"}],
            "providers": [{"name": "Data for Canada", "roles": ["processor", "host"]}],
            "temporal": {"start": "2021-01-01", "end": "2021-12-31"} if ds % 2 else {"start": "2021-05-11"},
        },
    }


class _Range(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()

    def do_GET(self) -> None:
        start, end = (int(v) for v in self.headers["Range"].removeprefix("bytes=").split("-"))
        data = self.body[start:end + 1]
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


BIN = Path(sys.executable).parent
BARE = """import sys, pyarrow.json as pj, pyarrow.parquet as pq
pq.write_table(pj.read_json(sys.argv[1]), sys.argv[2])"""
SGP = """import sys; from stac_geoparquet.arrow import parse_stac_ndjson_to_parquet
parse_stac_ndjson_to_parquet(sys.argv[1], sys.argv[2])"""
APPEND = """import json, sys, time; from pathlib import Path; from d4c.catalog import append_record
record = json.loads(Path(sys.argv[1]).read_text())
t, c = time.perf_counter(), time.process_time()
append_record(record, Path(sys.argv[2]), metadata=lambda r: r["metadata"])
print(time.perf_counter() - t, time.process_time() - c)"""


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def child(argv: list[str]) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS (bytes), stdout and CPU seconds (user + system) of one process."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}")
    return wall, usage.ru_maxrss * 1024, out, usage.ru_utime + usage.ru_stime


CPU: dict[str, float] = {}  # label -> min CPU seconds of its last measure


def measure(label: str, runs: list[tuple[float, int, float]], note: str = "") -> float:
    """Print min/median of N, the min CPU seconds and the peak RSS; return the min."""
    times = [t for t, _, _ in runs]
    rss = max(r for _, r, _ in runs)
    cpu = CPU[label] = min(c for _, _, c in runs)
    print(f"  {label:44} min {min(times):8.3f} s  median {statistics.median(times):8.3f} s  "
          f"of {len(times)}  CPU {cpu:7.2f} s  peak RSS {rss / 2**20:7.0f} MiB  load {_load()}  "
          f"{note}", flush=True)
    return min(times)


def prepare(tmp: Path, datasets: int, versions: int,
            peers: bool) -> tuple[Path, Path, Path, str]:
    """releases/ (all but the last version), the held-out record, and (for the peers) the
    items as NDJSON."""
    rng = random.Random(42)
    releases, ndjson, held = tmp / "releases", tmp / "items.ndjson", tmp / "append.json"
    with ndjson.open("w") as items_out:
        for ds in range(datasets):
            records = [synthetic_record(ds, f"{v // 10}.{v % 10}.0", rng) for v in range(versions)]
            if ds == datasets - 1:
                held.write_text(json.dumps(records.pop()))
            folder = releases / records[0]["id"]
            folder.mkdir(parents=True)
            for r in records:
                (folder / f"{r['version']}.json").write_text(json.dumps(r))
            if peers:
                with paused_gc():
                    for item in items_from_records(records, lambda r: r["metadata"]):
                        items_out.write(json.dumps(item) + "\n")
    probe = synthetic_record(datasets // 2, "0.0.0", random.Random(0))["id"]
    return releases, ndjson, held, probe


def builds(tmp: Path, releases: Path, ndjson: Path, repeat: int,
           peers: bool) -> dict[str, float]:
    out = tmp / "catalog.parquet"
    argvs = {
        "d4c catalog build (CLI, from record files)": [str(BIN / "d4c"), "catalog", "build",
                                                      "--releases", str(releases), "--out", str(out)],
        "bare pyarrow defaults (NDJSON -> Parquet)": [sys.executable, "-c", BARE, str(ndjson),
                                                      str(tmp / "bare.parquet")],
        "stac-geoparquet parse_stac_ndjson_to_parquet": [sys.executable, "-c", SGP, str(ndjson),
                                                         str(tmp / "sgp.parquet")],
        "rustac translate (NDJSON -> stac-geoparquet)": [str(BIN / "rustac"), "translate",
                                                         str(ndjson), str(tmp / "rustac.parquet")],
    }
    if not peers:
        argvs = dict(list(argvs.items())[:1])
    runs: dict[str, list[tuple[float, int, float]]] = {k: [] for k in argvs}
    for _ in range(repeat):  # interleaved: noise hits every tool alike
        for label, argv in argvs.items():
            wall, rss, _, cpu = child(argv)
            runs[label].append((wall, rss, cpu))
    sizes = {"d4c catalog build (CLI, from record files)": out,
             "bare pyarrow defaults (NDJSON -> Parquet)": tmp / "bare.parquet",
             "stac-geoparquet parse_stac_ndjson_to_parquet": tmp / "sgp.parquet",
             "rustac translate (NDJSON -> stac-geoparquet)": tmp / "rustac.parquet"}
    return {label: measure(label, r, f"{sizes[label].stat().st_size / 1e6:.1f} MB")
            for label, r in runs.items()}


def appends(tmp: Path, held: Path, repeat: int, datasets: int) -> tuple[float, float]:
    """One append of the held-out last version (the last dataset, in the last row group),
    and one of a new version of the middle dataset (a full row group written again)."""
    middle = tmp / "append-middle.json"
    middle.write_text(json.dumps(synthetic_record(datasets // 2, "99.0.0", random.Random(1))))
    figures = []
    for label, record in (("append one version (in its process)", held),
                          ("append one version, middle dataset", middle)):
        runs = []
        for _ in range(repeat):
            copy = tmp / "appended.parquet"
            shutil.copyfile(tmp / "catalog.parquet", copy)
            shutil.copyfile(tmp / "catalog.collections.json", tmp / "appended.collections.json")
            _, rss, out, _ = child([sys.executable, "-c", APPEND, str(record), str(copy)])
            wall, cpu = (float(v) for v in out.split())
            runs.append((wall, rss, cpu))
        figures.append(measure(label, runs))
    CPU["append"], CPU["append_middle"] = (CPU[k] for k in (
        "append one version (in its process)", "append one version, middle dataset"))
    return figures[0], figures[1]


def point_queries(out: Path, probe: str, repeat: int) -> dict[str, float]:
    cli = [(w, r, c) for w, r, _, c in (
        child([str(BIN / "d4c"), "catalog", "query", "--catalog", str(out), "--dataset", probe,
               "--format", "json"]) for _ in range(repeat))]
    duck: list[tuple[float, int, float]] = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        rows = duckdb.connect().execute("SELECT * FROM read_parquet(?) WHERE collection = ?",
                                        [str(out), probe]).fetchall()
        duck.append((time.perf_counter() - t, 0, time.process_time() - c))
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Range,), {"body": out.read_bytes()}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/catalog.parquet"
    http: list[tuple[float, int, float]] = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        remote = open_remote(url)
        read_remote(remote, probe, COLUMNS)  # what `d4c catalog query --dataset` reads
        http.append((time.perf_counter() - t, 0, time.process_time() - c))  # CPU: with the server's
    server.shutdown()
    size = out.stat().st_size
    return {
        "cli": measure("point query: d4c catalog query (whole CLI run)", cli),
        "duckdb": measure("point query: DuckDB, new connection, SELECT *", duck,
                          f"{len(rows)} rows"),
        "http": measure("point query: d4c's read over HTTP Range", http,
                        f"{remote.bytes_read:,} of {size:,} bytes in {remote.requests} requests"),
    }


def layout(out: Path) -> None:
    md = pq.ParquetFile(out).metadata
    kv = sum(len(k) + len(v) for k, v in (md.metadata or {}).items())
    side = out.with_name(out.name.removesuffix(".parquet") + ".collections.json")
    print(f"  layout: {md.num_rows:,} rows, {md.num_row_groups} row groups x {md.num_columns} "
          f"leaf columns; footer {md.serialized_size:,} bytes ({kv:,} of them key-value "
          f"metadata); file {out.stat().st_size / 1e6:.1f} MB; collections file beside it "
          f"{side.stat().st_size / 1e6 if side.exists() else 0:.2f} MB")


def exponent(sizes: list[int], times: list[float]) -> str:
    ks = [math.log(times[i + 1] / times[i]) / math.log(sizes[i + 1] / sizes[i])
          for i in range(len(sizes) - 1)]
    return ", ".join(f"{sizes[i]:,}->{sizes[i + 1]:,}: k = {k:.2f}" for i, k in enumerate(ks))


def one_size(n: int, versions: int, repeat: int, peers: bool) -> dict[str, float]:
    datasets = max(1, n // versions)
    tmp = Path(tempfile.mkdtemp(prefix="d4c-bench-catalog-"))
    try:
        t = time.perf_counter()
        releases, ndjson, held, probe = prepare(tmp, datasets, versions, peers)
        print(f"\n{n:,} versions ({datasets:,} datasets x {versions}): inputs written in "
              f"{time.perf_counter() - t:.0f} s (not measured); {os.cpu_count()} CPUs", flush=True)
        figures = builds(tmp, releases, ndjson, repeat, peers)
        layout(tmp / "catalog.parquet")
        figures["append"], figures["append_middle"] = appends(tmp, held, repeat, datasets)
        figures.update(point_queries(tmp / "catalog.parquet", probe, repeat))
        figures.update(build_cpu=CPU["d4c catalog build (CLI, from record files)"],
                       append_cpu=CPU["append"], append_middle_cpu=CPU["append_middle"])
        return figures
    finally:
        shutil.rmtree(tmp)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--versions", type=int, default=100, help="versions per dataset")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-peers", action="store_true",
                    help="d4c only (a 1M run: the peers' NDJSON alone takes minutes to write)")
    args = ap.parse_args()
    results = [one_size(n, args.versions, args.repeat, not args.no_peers) for n in args.sizes]
    build = "d4c catalog build (CLI, from record files)"
    peers = [k for k in results[0] if k.startswith(("stac-geoparquet", "rustac"))]
    print(f"\nsummary (load {_load()})")
    for n, r in zip(args.sizes, results):
        if peers:
            best = min(peers, key=lambda k: r[k])
            print(f"  {n:>9,}: build {r[build]:.2f} s = {r[build] / r[best]:.2f}x the best "
                  f"peer ({best.split()[0]}; goal <= 0.5x)")
        print(f"  {n:>9,}: append {r['append']:.3f} s = {r['append'] / r[build]:.3f}x the "
              f"build, middle dataset {r['append_middle']:.3f} s = "
              f"{r['append_middle'] / r[build]:.3f}x (goal <= 0.05x at 100k); CPU "
              f"{r['append_cpu'] / r['build_cpu']:.3f}x and {r['append_middle_cpu'] / r['build_cpu']:.3f}x")
    if len(args.sizes) > 1:
        for label in [build, *peers]:
            print(f"  {label}: {exponent(args.sizes, [r[label] for r in results])} (goal <= 1.05)")
        for key in ("cli", "duckdb", "http"):
            print(f"  point query {key}: {results[-1][key] / results[0][key]:.2f}x from "
                  f"{args.sizes[0]:,} to {args.sizes[-1]:,} (goal <= 1.5x at 1M against 10k)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
