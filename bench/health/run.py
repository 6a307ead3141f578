"""Benchmark: `d4c mirrors check` over 10,000 artifacts on 3 local HTTP mirrors.

5,000 versions, each a data file (256 KiB to 8 MiB, 64 KiB pieces) and its manifest: 10,000
artifacts, 30,000 copies, served from memory by three local HTTP servers (keep-alive,
Range, ETag). Prints, side by side:
  tier 1: wall time, requests per artifact (one HEAD per copy; 3 copies each)
  tier 2: wall time, requests per artifact, bytes read per data copy relative to its size
The per-host rate limit is off (local servers); the per-host concurrency is the default.
Usage: python bench/health/run.py [--versions 5000] [--jobs 16]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KIB = 1024
PIECE = 64 * KIB


class Virtual:
    """A file's bytes made on demand: its 32-byte block repeated (no 20 GB in memory)."""

    def __init__(self, name: str, size: int) -> None:
        self.block, self.size = hashlib.sha256(name.encode()).digest(), size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, span: slice) -> bytes:
        start, stop = span.start or 0, min(span.stop if span.stop is not None else self.size, self.size)
        if stop <= start:
            return b""
        off = start % 32
        return (self.block * ((stop - start + off) // 32 + 1))[off:off + stop - start]


def serve(files: dict[str, Any]) -> tuple[Any, str]:
    """One mirror in its own process (forked: the files are shared), so the servers do not
    take the checker's GIL; returns (process, base URL)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()
    proc = ctx.Process(target=_serve_forever, args=(files, ready), daemon=True)
    proc.start()
    return proc, ready.get(timeout=30)


def _serve_forever(files: dict[str, Any], ready: Any) -> None:
    httpd, url = _server(files)
    ready.put(url)
    httpd.serve_forever()


def _server(files: dict[str, Any]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits ~40 ms on delayed ACKs

        def log_message(self, *args: Any) -> None:
            return None

        def _serve(self) -> None:
            data = files.get(self.path)
            if data is None:
                self._send(404, b"", {})
                return
            headers = {"ETag": f'"{len(data):x}"', "Accept-Ranges": "bytes",
                       "Access-Control-Allow-Origin": "*"}
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if m:
                start, end = int(m[1]), min(int(m[2] or len(data) - 1), len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._send(206, data[start:end + 1], headers)
            else:
                self._send(200, data[0:len(data)], headers)

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _serve

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def world(versions: int) -> tuple[dict[str, Any], list[Any], int]:
    """The files (path -> bytes) and the release records; total data bytes."""
    files: dict[str, Any] = {}
    specs = []
    total = 0
    for n in range(versions):
        ident, version = f"ca_bench_{n // 10:04d}", f"1.{n % 10}.0"
        base = f"{ident}_v{version}"
        size = 256 * KIB + (n * 7919 * KIB) % (8 * 1024 * KIB - 256 * KIB)
        name = f"{base}.parquet"
        data = Virtual(name, size)
        total += size
        full = hashlib.sha1(data[0:PIECE]).digest()  # every full piece repeats the same block
        count = -(-size // PIECE)
        last = hashlib.sha1(data[(count - 1) * PIECE:size]).digest()
        pieces = full * (count - 1) + last
        whole = data[0:size]
        out = {"name": "table", "file": name, "format": "parquet", "size": size,
               "media_type": "application/vnd.apache.parquet",
               "sha256": hashlib.sha256(whole).hexdigest(), "md5": hashlib.md5(whole).hexdigest(),
               "piece_size": PIECE, "pieces_sha1": pieces.hex(), "bbox": None, "crs": None}
        manifest = json.dumps({"manifest_version": 1, "outputs": [out], "environment": {}}).encode()
        mname = f"{base}_manifest.json"
        files[f"/{ident}/v{version}/{name}"] = data
        files[f"/{ident}/v{version}/{mname}"] = manifest
        specs.append((ident, version, out, mname, manifest))
    return files, specs, total


def records(specs: list[Any], urls: list[str]) -> list[dict[str, Any]]:
    names = ["m0", "m1", "m2"]
    out = []
    for ident, version, o, mname, manifest in specs:
        def entry(role: str, name: str, file: str, size: int, sha: str, media: str,
                  ident: str = ident, version: str = version) -> dict[str, Any]:
            return {"role": role, "name": name, "file": file, "size": size, "sha256": sha, "md5": "0" * 32,
                    "media_type": media,
                    "urls": {m: f"{u}/{ident}/v{version}/{file}" for m, u in zip(names, urls)}}
        out.append({
            "record_version": 1, "id": ident, "version": version, "released_at": "2026-11-26T00:00:00Z",
            "manifest": {"outputs": [o], "environment": {}},
            "metadata": {"title": {"en": ident}, "license": "CC0-1.0",
                         "spatial": {"bbox": [-141.0, 41.7, -52.6, 83.1]}},
            "doi": None, "files": [
                entry("data", "table", o["file"], o["size"], o["sha256"], o["media_type"]),
                entry("manifest", "manifest", mname, len(manifest), hashlib.sha256(manifest).hexdigest(),
                      "application/json")],
            "mirrors": [{"name": m, "retain": "all"} for m in names], "torrents": [], "sources": []})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=16)
    args = ap.parse_args()
    from d4c.catalog import build_catalog
    from d4c.mirrors.run import Options, check

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["D4C_CACHE"] = str(Path(tmp) / "cache")
        files, specs, total = world(args.versions)
        servers = [serve(files) for _ in range(3)]
        catalog = Path(tmp) / "catalog.parquet"
        build_catalog(records(specs, [u for _, u in servers]), catalog, metadata=lambda r: r["metadata"])
        artifacts = 2 * args.versions
        results = {}
        for tier in (1, 2):
            opts = Options(tier=tier, date="2026-12-01", jobs=args.jobs, rate=0, scrape=False)
            start = time.perf_counter()
            report = check(str(catalog), opts)
            wall = time.perf_counter() - start
            bad = len(report.failures)
            pieces = [r for r in report.rows if r["check"] == "pieces"]
            results[tier] = (wall, report.stats, bad, pieces)
        for proc, _ in servers:
            proc.terminate()
            proc.join()
    print(f"mirror health: {artifacts} artifacts ({args.versions} data files of 256 KiB-8 MiB, "
          f"{args.versions} manifests) x 3 local HTTP mirrors, {total / 2**30:.2f} GiB of data per mirror")
    print(f"{'':28}{'tier 1 (HEAD)':>18}{'tier 2 (pieces)':>18}")
    w1, s1, b1, _ = results[1]
    w2, s2, b2, p2 = results[2]
    print(f"{'wall time':28}{w1:>17.1f}s{w2:>17.1f}s")
    print(f"{'requests per artifact':28}{s1['requests'] / artifacts:>18.2f}{s2['requests'] / artifacts:>18.2f}")
    print(f"{'artifacts per second':28}{artifacts / w1:>18.0f}{artifacts / w2:>18.0f}")
    print(f"{'failing copies':28}{b1:>18}{b2:>18}")
    rel = [r["bytes_read"] / r["size"] for r in p2]
    mean_rel = sum(rel) / len(rel)
    read = sum(r["bytes_read"] for r in p2)
    print(f"tier 2 bytes read per data copy / its size: mean {mean_rel:.1%}, "
          f"min {min(rel):.1%}, max {max(rel):.1%}; all copies: {read / 2**20:.0f} MiB of "
          f"{3 * total / 2**20:.0f} MiB ({read / (3 * total):.1%}); "
          f"manifests fetched once per version ({s2['by_method'].get('GET', 0) - len(p2) * 4} GETs)")
    return 0 if b1 == b2 == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
