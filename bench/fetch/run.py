"""Benchmark: fetch with its default settings vs one-at-a-time, against a server adding
100 ms per request.

16 sources (256 KiB each) from a threaded HTTP server on 127.0.0.1 that sleeps 100 ms
before each answer, each run into a fresh cache, min and median of N interleaved rounds,
with the load average. Three runs: jobs=1, `fetch_sources` with no `jobs` argument (its
default, what `d4c fetch` and a build use), and --jobs. The goal (>= 4x) is the ratio
one-at-a-time / default. Its ceiling is min(default jobs, sources) = 4.0 for a default of 4,
so at that default the goal can only be missed; the --jobs line shows what more would give.
Usage: python bench/fetch/run.py [--sources 16] [--latency 0.1] [--jobs 16] [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import statistics
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


def timed_fetch(recipe: Recipe, jobs: int | None) -> float:
    """One fetch of every source into a fresh cache; `jobs` None: fetch's own default."""
    with tempfile.TemporaryDirectory(prefix="d4c-bench-cache-") as cache:
        os.environ["D4C_CACHE"] = cache
        start = time.perf_counter()
        got = (fetch_sources(recipe, progress=False) if jobs is None
               else fetch_sources(recipe, jobs=jobs, progress=False))
        took = time.perf_counter() - start
        assert len(got) == len(recipe.sources)
    return took


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
        default_jobs = inspect.signature(fetch_sources).parameters["jobs"].default
        runs: dict[str, list[float]] = {"serial": [], "default": [], "parallel": []}
        for _ in range(args.repeat):  # interleaved: drift hits every setting alike
            for name, jobs in (("serial", 1), ("default", None), ("parallel", args.jobs)):
                runs[name].append(timed_fetch(recipe, jobs))
    httpd.shutdown()
    load = os.getloadavg()
    print(f"{args.sources} sources x 256 KiB, {args.latency * 1000:.0f} ms added per request, "
          f"min and median of {args.repeat}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    best = {k: min(v) for k, v in runs.items()}
    for name, label in (("serial", "one at a time (jobs=1)"),
                        ("default", f"default       (jobs={default_jobs})"),
                        ("parallel", f"parallel      (jobs={args.jobs})")):
        note = "" if name == "serial" else f"   ratio {best['serial'] / best[name]:5.2f}x"
        print(f"  {label:28} min {best[name]:6.3f} s, median {statistics.median(runs[name]):6.3f} s{note}")
    ratio = best["serial"] / best["default"]
    print(f"one-at-a-time / default = {ratio:.2f}x   goal >= 4x  {'ok' if ratio >= 4 else 'MISSED'} "
          f"(ceiling at this default: {min(default_jobs, args.sources):.1f}x)")


if __name__ == "__main__":
    main()
