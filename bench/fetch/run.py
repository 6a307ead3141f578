"""Benchmark: parallel fetch vs one-at-a-time against a server adding 100 ms per request.

16 sources (256 KiB each) from a threaded HTTP server on 127.0.0.1 that sleeps 100 ms
before each answer, each run into a fresh cache, best of N. Prints the times side by
side and the ratio one-at-a-time / parallel (goal >= 4x).
Usage: python bench/fetch/run.py [--sources 16] [--latency 0.1] [--jobs 16] [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from d4c.fetch import fetch_sources
from d4c.recipe import Recipe, Source


def serve(bodies: dict[str, bytes], latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(latency)
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def timed_fetch(recipe: Recipe, jobs: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="d4c-bench-cache-") as cache:
            os.environ["D4C_CACHE"] = cache
            start = time.perf_counter()
            got = fetch_sources(recipe, jobs=jobs, progress=False)
            best = min(best, time.perf_counter() - start)
            assert len(got) == len(recipe.sources)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("D4C_MIRRORS", None)
    bodies = {f"/s{i}.bin": os.urandom(256 * 1024) for i in range(args.sources)}
    httpd = serve(bodies, args.latency)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    sources = tuple(
        Source(name=p.strip("/"), sha256=hashlib.sha256(b).hexdigest(), size=len(b), url=base + p)
        for p, b in bodies.items()
    )
    with tempfile.TemporaryDirectory(prefix="d4c-bench-repo-") as repo:
        folder = Path(repo) / "datasets" / "ca_bench_fetch"
        folder.mkdir(parents=True)
        recipe = Recipe(path=folder / "recipe.yaml", data={"id": "ca_bench_fetch", "version": "1.0.0"},
                        sha256="0" * 64, sources=sources)
        serial = timed_fetch(recipe, 1, args.repeat)
        default = timed_fetch(recipe, 4, args.repeat)
        parallel = timed_fetch(recipe, args.jobs, args.repeat)
    httpd.shutdown()
    print(f"{args.sources} sources x 256 KiB, {args.latency * 1000:.0f} ms added per request, "
          f"best of {args.repeat}, load average {os.getloadavg()[0]:.2f}")
    print(f"  one at a time (jobs=1):     {serial:6.3f} s")
    print(f"  default       (jobs=4):     {default:6.3f} s   ratio {serial / default:5.2f}x")
    print(f"  parallel      (jobs={args.jobs}):    {parallel:6.3f} s   ratio {serial / parallel:5.2f}x")
    ratio = serial / parallel
    print(f"one-at-a-time / parallel = {ratio:.2f}x   goal >= 4x  {'ok' if ratio >= 4 else 'MISSED'}")


if __name__ == "__main__":
    main()
