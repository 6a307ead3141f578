"""bench/release: `d4c release` of many objects to moto_server (a process of its own), to
find the cost per object beyond the fixed cost of a release.

A synthetic dataset (the capitals demo's table as one GeoParquet, plus N small raw sources)
is built once in a temporary git copy of this project; each round releases it afresh (new
bucket, no journal, no record) to one public S3 target that is also a source mirror, so a
release publishes N + 5 objects (the sources, the artifact, its torrent, the manifest, the
provenance and the bundle). Two sizes, interleaved; the slope between them is the cost per
object, the intercept the fixed cost.

Beside each release, a bare loop sends moto the requests d4c makes per object, with boto3 and
requests and nothing else, on as many threads: the plan's signed HEAD (absent), the
conditional PUT with our checksums and metadata, the anonymous HEAD of the reach check. Its
slope is moto's own cost per object on this machine; d4c's overhead is the difference.

    .venv/bin/python bench/release/run.py [--small 20] [--large 200] [--rounds 3] [--slots 8]

Prints min and median of N per size, the load average, and the per-object figures of d4c
and of the bare loop (goal: <= 5 ms per object beyond the fixed cost for 200 objects).
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
from concurrent.futures import ThreadPoolExecutor
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


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
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


def public_bucket(client: object, name: str) -> None:
    client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    client.put_bucket_policy(Bucket=name, Policy=json.dumps({  # type: ignore[attr-defined]
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:HeadObject"],
            "Resource": [f"arn:aws:s3:::{name}/data/*"]}]}))


def bare(endpoint: str, bucket: str, n: int, slots: int) -> float:
    """Seconds for moto to answer d4c's per-object requests for n objects, sent bare (a boto3
    client set up as d4c's s3 target sets up its own)."""
    import boto3
    import requests
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="a",
                          aws_secret_access_key="b", config=Config(
                              s3={"addressing_style": "path", "payload_signing_enabled": False},
                              max_pool_connections=slots + 2, request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))

    keys = [f"data/sources/sha256/{i:04d}" for i in range(n)]
    anon = requests.Session()
    anon.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=slots + 2))

    def head(key: str) -> None:
        try:
            client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError:
            pass

    def put(key: str) -> None:
        data = f"raw source {key}\n".encode()
        sha, md5 = hashlib.sha256(data).digest(), hashlib.md5(data).digest()
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*",
                          Metadata={"sha256": sha.hex(), "md5": md5.hex(), "size": str(len(data))},
                          ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(sha).decode(),
                          ContentMD5=base64.b64encode(md5).decode())

    def reach(key: str) -> None:
        anon.head(f"{endpoint}/{bucket}/{key}").raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        for step in (head, put, reach):  # phase by phase, as the release: plan, upload, reach
            list(pool.map(step, keys))
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


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--small", type=int, default=20, help="raw sources of the small release")
    ap.add_argument("--large", type=int, default=200, help="raw sources of the large release")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slots", type=int, default=8, help="the s3 target's parallel_uploads")
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
        from d4c.release.orchestrate import release
        for n in sizes:
            rcp = load_id(f"ca_bench_release-{n}", root)
            build(rcp, root, build_dir_for(root, rcp), BuildOptions())
        moto, endpoint = start_moto()
        try:
            import boto3
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                  aws_access_key_id="a", aws_secret_access_key="b")
            times: dict[int, list[float]] = {n: [] for n in sizes}
            floor: dict[int, list[float]] = {n: [] for n in sizes}
            objects: dict[int, int] = {}
            for r in range(args.rounds):
                for n in sizes:
                    bucket = f"bench-{n}-{r}"
                    public_bucket(client, bucket)
                    cfg = config(where / f"targets-{n}-{r}.yaml", endpoint, bucket, args.slots)
                    for sub in ("releases", ".d4c/journal", ".d4c/release", ".d4c/catalog"):
                        shutil.rmtree(root / sub, ignore_errors=True)
                    start = time.perf_counter()
                    release(f"ca_bench_release-{n}", targets_file=cfg, echo=lambda line: None)
                    times[n].append(time.perf_counter() - start)
                    keys = client.list_objects_v2(Bucket=bucket).get("Contents", [])
                    objects[n] = len(keys) - 1  # less the journal
                    public_bucket(client, f"bare-{n}-{r}")
                    floor[n].append(bare(endpoint, f"bare-{n}-{r}", objects[n], args.slots))
            load = os.getloadavg()
        finally:
            moto.terminate()
            moto.wait(timeout=30)
    print(f"d4c release to moto_server, parallel_uploads {args.slots}, {args.rounds} interleaved rounds, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for n in sizes:
        print(f"  {objects[n]:4d} objects: min {min(times[n]):.2f} s, median {statistics.median(times[n]):.2f} s; "
              f"bare requests min {min(floor[n]):.2f} s")
    for label, pick in (("min", min), ("median", statistics.median)):
        per, fixed = slope(times, objects, pick)
        moto_per, _ = slope(floor, objects, pick)
        print(f"  per object ({label}s): {per * 1000:.1f} ms beyond a fixed {fixed:.2f} s (goal <= 5 ms); "
              f"moto's own for the same requests {moto_per * 1000:.1f} ms, d4c's overhead "
              f"{(per - moto_per) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
