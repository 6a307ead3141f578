"""bench/release: `d4c release` of many objects to an S3 server in a process of its own
(moto_server, or bench/upload/sink.py --keep, which does almost no work), to find the cost
per object beyond the fixed cost of a release.

A synthetic dataset (the capitals demo's table as one GeoParquet, plus N small raw sources)
is built once in a temporary git copy of this project; each round releases it afresh (new
bucket, no journal, no record) to one public S3 target that is also a source mirror, so a
release publishes N + 5 objects (the sources, the artifact, its torrent, the manifest, the
provenance and the bundle). Two sizes, interleaved; the slope between them is the cost per
object, the intercept the fixed cost.

Beside each release, a bare loop sends the server the requests d4c makes for a fresh
release's objects, with boto3 and requests and nothing else, on as many threads: the plan's
listing of the prefix (a page per 1,000 keys), the conditional PUT with our checksums and
metadata of each object, the anonymous HEAD and ranged GET of the first. Its slope is the
server's own cost per object on this machine; d4c's overhead is the difference. Every HTTP
request d4c sends during a release is counted (urllib3, under both boto3 and requests), so
the requests per object are printed too. `--rerun` times instead a second run of each
release that finds every object there (its record not yet written, as after a crash): the
plan's listing and a HEAD of each object (our sha256), then a HEAD each to verify (the plan's
look is not reused) and the anonymous HEAD + ranged GET of each source found there, 4.00
requests per object (the bare loop still sends the listing and one HEAD each).

    .venv/bin/python bench/release/run.py [--small 20] [--large 200] [--rounds 3] [--slots 8]
                                          [--server moto|sink|both] [--rerun]

Prints, per server, min and median of N per size, the load average, d4c's requests per
object, and the per-object figures of d4c and of the bare loop (goal: <= 5 ms per object
beyond the fixed cost for 200 objects).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEMO = "ca_d4c_capitals"
CREDS = {"D4C_BENCH_KEY": "bench", "D4C_BENCH_SECRET": "bench-secret"}
TRANSFORM = '''
import geopandas as gpd
import pandas as pd


def build(ctx):
    table = pd.read_csv(ctx.source("capitals"), dtype={"capital": "string", "pruid": "int16"})
    ctx.write_geoparquet("capitals", gpd.GeoDataFrame(
        table[["capital", "pruid"]], geometry=gpd.points_from_xy(table["lon"], table["lat"]),
        crs="EPSG:4326"))
'''


def dataset(root: Path, ident: str, n: int) -> None:
    """A recipe with the capitals table and n - 1 more small sources."""
    src = (REPO / "datasets" / DEMO / "recipe.yaml").read_text()
    head = src[:src.index("sources:")].replace(f"id: {DEMO}", f"id: {ident}")
    folder = root / "datasets" / ident
    (folder / "sources").mkdir(parents=True)
    shutil.copy(REPO / "datasets" / DEMO / "sources" / "capitals.csv", folder / "sources")
    lines = ["sources:"]
    for i in range(n):
        name = "capitals" if i == 0 else f"extra-{i:04d}"
        path = folder / "sources" / ("capitals.csv" if i == 0 else f"{name}.txt")
        if i:
            path.write_text(f"raw source {i} of {ident}\n")
        data = path.read_bytes()
        lines += [f"  - name: {name}", f"    path: sources/{path.name}",
                  f"    sha256: {hashlib.sha256(data).hexdigest()}", f"    size: {len(data)}"]
    tail = ("transform:\n  python: transform.py:build\nenvironment: docker/Dockerfile\noutputs:\n"
            "  - name: capitals\n    format: geoparquet\n    sort_by: [pruid, capital]\n"
            "    primary_key: [capital]\ndistribution:\n  targets: all\n  torrent: true\n")
    (folder / "recipe.yaml").write_text(head + "\n".join(lines) + "\n" + tail)
    (folder / "transform.py").write_text(TRANSFORM)


def make_repo(where: Path, sizes: list[int]) -> Path:
    root = where / "repo"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith("datasets/"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    for n in sizes:
        dataset(root, f"ca_bench_release-{n}", n)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], cwd=root, check=True)
    return root


def start_server(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    """moto_server, or the sink keeping bodies (a journal is read back, the reach check GETs)."""
    if kind == "sink":
        proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "upload" / "sink.py"), "--keep"],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return proc, f"http://127.0.0.1:{int(proc.stdout.readline().split()[1])}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


@contextmanager
def counting() -> Iterator[Counter[str]]:
    """Every HTTP request sent in this process meanwhile, by kind (urllib3 carries boto3's
    and requests' alike; a retry is a request too)."""
    import urllib3.connectionpool as pool

    seen: Counter[str] = Counter()
    real = pool.HTTPConnectionPool.urlopen

    def urlopen(self: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
        seen["LIST" if "list-type=2" in url else method] += 1
        return real(self, method, url, *args, **kw)

    pool.HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        pool.HTTPConnectionPool.urlopen = real  # type: ignore[method-assign]


def public_bucket(client: object, name: str) -> None:
    client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    client.put_bucket_policy(Bucket=name, Policy=json.dumps({  # type: ignore[attr-defined]
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:HeadObject"],
            "Resource": [f"arn:aws:s3:::{name}/data/*"]}]}))


def bare(endpoint: str, bucket: str, n: int, slots: int, present: bool = False) -> float:
    """Seconds for the server to answer d4c's requests for n new objects (`present`: for n
    objects already there, which are HEADed instead of PUT), sent bare (a boto3 client set
    up as d4c's s3 target sets up its own)."""
    import boto3
    import requests
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="a",
                          aws_secret_access_key="b", config=Config(
                              s3={"addressing_style": "path", "payload_signing_enabled": False},
                              max_pool_connections=slots + 2, request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))

    keys = [f"data/sources/sha256/{i:04d}" for i in range(n)]
    anon = requests.Session()
    anon.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=slots + 2))

    def head(key: str) -> None:
        client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")

    def put(key: str) -> None:
        data = f"raw source {key}\n".encode()
        sha, md5 = hashlib.sha256(data).digest(), hashlib.md5(data).digest()
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*",
                          Metadata={"sha256": sha.hex(), "md5": md5.hex(), "size": str(len(data))},
                          ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(sha).decode(),
                          ContentMD5=base64.b64encode(md5).decode())

    start = time.perf_counter()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="data/sources/"):
        page.get("Contents")  # the plan's look: all absent, or all present
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(head if present else put, keys))
    anon.head(f"{endpoint}/{bucket}/{keys[0]}").raise_for_status()  # the reach check's one source
    anon.get(f"{endpoint}/{bucket}/{keys[0]}", headers={"Range": "bytes=0-0"}).raise_for_status()
    return time.perf_counter() - start


def slope(times: dict[int, list[float]], objects: dict[int, int], pick: Any) -> tuple[float, float]:
    """(seconds per object, fixed seconds) between the two sizes."""
    small, large = sorted(times)
    per = (pick(times[large]) - pick(times[small])) / (objects[large] - objects[small])
    return per, pick(times[small]) - per * objects[small]


def config(path: Path, endpoint: str, bucket: str, slots: int) -> Path:
    path.write_text(
        "journal: {target: s3}\ntargets:\n  - name: s3\n    kind: s3\n"
        f"    url: {endpoint}/{bucket}/{{key}}\n    layout: \"data/{{id}}/v{{version}}/{{file}}\"\n"
        "    source_mirror: true\n"
        "    credentials: {access_key_id: D4C_BENCH_KEY, secret_access_key: D4C_BENCH_SECRET}\n"
        f"    options: {{bucket: {bucket}, endpoint_url: \"{endpoint}\", parallel_uploads: {slots}}}\n")
    return path


@dataclass
class Runs:
    """One server's rounds: seconds per size of the release and of the bare loop, objects per
    size, and d4c's requests of the last round per size."""

    times: dict[int, list[float]] = field(default_factory=dict)
    floor: dict[int, list[float]] = field(default_factory=dict)
    objects: dict[int, int] = field(default_factory=dict)
    requests: dict[int, Counter[str]] = field(default_factory=dict)


def run_server(kind: str, where: Path, sizes: list[int], args: argparse.Namespace) -> Runs:
    """Interleaved rounds of each size's release and bare loop against a new `kind` server."""
    import boto3
    from d4c.release.orchestrate import release

    out = Runs({n: [] for n in sizes}, {n: [] for n in sizes})
    server, endpoint = start_server(kind)
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="a", aws_secret_access_key="b")
        root = Path(os.environ["D4C_REPO"])
        for r in range(args.rounds):
            for n in sizes:
                bucket = f"bench-{n}-{r}"
                public_bucket(client, bucket)
                cfg = config(where / f"targets-{kind}-{n}-{r}.yaml", endpoint, bucket, args.slots)
                for sub in ("releases", ".d4c/journal", ".d4c/release", ".d4c/catalog"):
                    shutil.rmtree(root / sub, ignore_errors=True)
                if args.rerun:  # the release runs once untimed; the rerun finds every key there
                    release(f"ca_bench_release-{n}", targets_file=cfg, echo=lambda line: None)
                    for sub in ("releases", ".d4c/journal", ".d4c/release", ".d4c/catalog"):
                        shutil.rmtree(root / sub, ignore_errors=True)
                with counting() as seen:
                    start = time.perf_counter()
                    release(f"ca_bench_release-{n}", targets_file=cfg, echo=lambda line: None)
                    out.times[n].append(time.perf_counter() - start)
                out.requests[n] = seen
                keys = client.list_objects_v2(Bucket=bucket).get("Contents", [])
                out.objects[n] = len(keys) - 1  # less the journal
                public_bucket(client, f"bare-{n}-{r}")
                if args.rerun:
                    bare(endpoint, f"bare-{n}-{r}", out.objects[n], args.slots)
                out.floor[n].append(bare(endpoint, f"bare-{n}-{r}", out.objects[n], args.slots, args.rerun))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def report(kind: str, runs: Runs, args: argparse.Namespace) -> None:
    load = os.getloadavg()
    name = {"moto": "moto_server", "sink": "the sink (bench/upload/sink.py --keep)"}[kind]
    what = "rerun (every object there)" if args.rerun else "release"
    print(f"d4c {what} to {name}, parallel_uploads {args.slots}, {args.rounds} interleaved rounds, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for n, times in runs.times.items():
        seen = " ".join(f"{k} {v}" for k, v in sorted(runs.requests[n].items()))
        print(f"  {runs.objects[n]:4d} objects: min {min(times):.2f} s, median {statistics.median(times):.2f} s; "
              f"bare requests min {min(runs.floor[n]):.2f} s; d4c's requests: {seen}")
    small, large = sorted(runs.times)
    extra = runs.objects[large] - runs.objects[small]
    per_req = (sum(runs.requests[large].values()) - sum(runs.requests[small].values())) / extra
    print(f"  requests per object: {per_req:.2f}")
    for label, pick in (("min", min), ("median", statistics.median)):
        per, fixed = slope(runs.times, runs.objects, pick)
        own, _ = slope(runs.floor, runs.objects, pick)
        print(f"  per object ({label}s): {per * 1000:.1f} ms beyond a fixed {fixed:.2f} s (goal <= 5 ms); "
              f"the server's own for the same requests {own * 1000:.1f} ms, d4c's overhead "
              f"{(per - own) * 1000:.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--small", type=int, default=20, help="raw sources of the small release")
    ap.add_argument("--large", type=int, default=200, help="raw sources of the large release")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slots", type=int, default=8, help="the s3 target's parallel_uploads")
    ap.add_argument("--server", choices=["moto", "sink", "both"], default="moto")
    ap.add_argument("--rerun", action="store_true",
                    help="time a rerun that finds every object there (no record yet), not a fresh release")
    args = ap.parse_args()
    os.environ.update(CREDS)
    with tempfile.TemporaryDirectory(prefix="d4c-bench-release-") as tmp:
        where = Path(tmp)
        sizes = [args.small, args.large]
        root = make_repo(where, sizes)
        os.environ.update({"D4C_REPO": str(root), "D4C_CACHE": str(where / "cache")})
        from d4c.build.pipeline import BuildOptions, build
        from d4c.recipe import load_id
        from d4c.release.files import build_dir_for
        for n in sizes:
            rcp = load_id(f"ca_bench_release-{n}", root)
            build(rcp, root, build_dir_for(root, rcp), BuildOptions())
        for kind in (["moto", "sink"] if args.server == "both" else [args.server]):
            report(kind, run_server(kind, where, sizes, args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
