"""bench/upload: one large artifact to a local S3 server, d4c's s3 target beside the clients a
user would pick instead: boto3 `upload_file` (defaults), obstore `put` (defaults), `aws s3 cp`
and `s5cmd cp`. Two servers, each a process of its own on 127.0.0.1:

- moto: moto_server, where the server is the bottleneck (what the tests use);
- sink: bench/upload/sink.py, which reads and drops the bytes, so the client is the limit.

    .venv/bin/python bench/upload/run.py [--size-mib 256] [--rounds 3] [--server both]

Every upload runs in a process of its own, so each peak RSS is that client's alone (d4c's
goal: <= 128 MiB). Python clients (the AWS CLI through its own driver, in its own
interpreter) time the upload call itself, wall and CPU (all threads); s5cmd is timed from
outside, less its start-up (the least of five 1-byte uploads). d4c does what it always does: our
sha256 in metadata, If-None-Match, CRC32 part checksums (ISA-L's). boto3 `upload_file` and
the AWS CLI send CRC32 part checksums too (botocore's default, zlib's CRC32); obstore and
s5cmd send no checksum header; no peer writes our sha256 or a conditional create. obstore comes from
requirements-dev.lock, s5cmd too; the AWS CLI is used when one is installed.
Prints min and median of N interleaved rounds and the load average. On 2 shared cores the
wall times swing with the machine's load; the CPU seconds swing less.

Where d4c's upload CPU goes (perf record over the upload alone, 512 MiB to the sink, after
ISA-L): the kernel's copies (page cache to the part reads, user to socket) about 60%, the
interpreter and botocore about 28% (~3 ms of CPU a request), ISA-L's CRC32 7%.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
HERE = Path(__file__).resolve()
MiB = 1 << 20
BUCKET = "bench"
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
# "obstore 16x8": obstore with d4c's part size and parallel parts, so that neither the
# sink's cost per request nor the part size decides between the two
PY = ("d4c", "boto3 upload_file", "obstore put", "obstore 16x8")


def aws_python() -> str | None:
    """The interpreter of the installed AWS CLI (its `aws` script's #! line), if any."""
    exe = shutil.which("aws")
    if exe is None:
        return None
    if "/shims/" in exe:  # pyenv's shim: ask pyenv for the real script
        exe = subprocess.run(["pyenv", "which", "aws"], check=False, capture_output=True,
                             text=True).stdout.strip() or exe
    first = Path(exe).read_bytes()[:200].split(b"\n")[0]
    return first[2:].decode().strip() if first.startswith(b"#!") else None


def child(method: str, endpoint: str, path: Path, key: str, sha: str, md5: str) -> None:
    """One upload in this process; prints the call's own seconds and CPU seconds as JSON."""
    cpu = time.process_time()  # reset below, once the client is imported and made
    if method == "d4c":
        from d4c.release.targets import TargetConfig, make_target
        target = make_target(TargetConfig(
            kind="s3", name="bench", url=f"{endpoint}/{BUCKET}/{{key}}",
            options={"bucket": BUCKET, "endpoint_url": endpoint},
            credentials={"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"}))
        start, cpu = time.perf_counter(), time.process_time()
        target.upload(key, path, sha, md5)
    elif method == "boto3 upload_file":
        import boto3
        from botocore.config import Config
        client = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
        start, cpu = time.perf_counter(), time.process_time()
        client.upload_file(str(path), BUCKET, key)
    elif method.startswith("obstore"):
        import obstore
        from obstore.store import S3Store
        store = S3Store(BUCKET, endpoint=endpoint, client_options={"allow_http": True})
        chunk, parallel = (16 * MiB, 8) if method == "obstore 16x8" else (5 * MiB, 12)  # else: defaults
        start, cpu = time.perf_counter(), time.process_time()
        obstore.put(store, key, path, chunk_size=chunk, max_concurrency=parallel)
    else:  # the AWS CLI's own driver, in the interpreter its `aws` script names
        from awscli.clidriver import create_clidriver
        driver = create_clidriver()
        start, cpu = time.perf_counter(), time.process_time()
        if driver.main(["s3", "cp", "--only-show-errors", "--endpoint-url", endpoint, str(path),
                        f"s3://{BUCKET}/{key}"]):
            raise SystemExit("aws s3 cp failed")
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}))


def run_one(argv: list[str]) -> tuple[float, float, float, str]:
    """wall seconds, CPU seconds, peak RSS MiB and stdout of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env={**os.environ, **CREDS})
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode})")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def upload(method: str, endpoint: str, path: Path, key: str, sha: str, md5: str) -> tuple[float, float, float]:
    """Seconds and CPU seconds of the upload itself, and the process's peak RSS in MiB."""
    if method == "s5cmd cp":
        wall, cpu, rss, _ = run_one(["s5cmd", "--endpoint-url", endpoint, "cp", str(path),
                                     f"s3://{BUCKET}/{key}"])
        return wall, cpu, rss
    exe = sys.executable if method in PY else str(aws_python())
    _, _, rss, out = run_one([exe, str(HERE), "--child", method, "--endpoint", endpoint,
                              "--file", str(path), "--key", key, "--sha", sha, "--md5", md5])
    got = json.loads(out.strip().splitlines()[-1])
    return float(got["seconds"]), float(got["cpu"]), rss


def make_file(path: Path, size: int) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("wb") as fh:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            sha.update(block)
            md5.update(block)
            fh.write(block)
    return sha.hexdigest(), md5.hexdigest()


@contextmanager
def server(kind: str) -> Iterator[str]:
    if kind == "moto":
        from moto.server import ThreadedMotoServer  # noqa: F401 - fail early when moto is missing
        port = _free_port()
        argv = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port)
    else:
        proc = subprocess.Popen([sys.executable, str(HERE.with_name("sink.py"))], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
    endpoint = f"http://127.0.0.1:{port}"
    try:
        if kind == "moto":
            import boto3
            boto3.client("s3", endpoint_url=endpoint, **_boto_creds()).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _boto_creds() -> dict[str, str]:
    return {"aws_access_key_id": CREDS["AWS_ACCESS_KEY_ID"], "region_name": "us-east-1",
            "aws_secret_access_key": CREDS["AWS_SECRET_ACCESS_KEY"]}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


def bench(kind: str, path: Path, sha: str, md5: str, rounds: int, size_mib: int) -> None:
    methods = [*PY, *(["aws s3 cp"] if aws_python() else []), *(["s5cmd cp"] if shutil.which("s5cmd") else [])]
    missing = sorted({"aws s3 cp", "s5cmd cp"} - set(methods))
    with server(kind) as endpoint:
        tiny = OUT / "tiny.bin"
        tiny.write_bytes(b"x")
        # s5cmd is timed from outside: its start-up (least of 5 one-byte uploads) is taken off
        startup = ([min(v) for v in zip(*(upload("s5cmd cp", endpoint, tiny, f"tiny/{i}", "", "")[:2]
                                          for i in range(5)))] if "s5cmd cp" in methods else [0.0, 0.0])
        runs: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
        for r in range(rounds):
            for m in methods:  # interleaved: drift on a shared machine hits every client alike
                sec, cpu, rss = upload(m, endpoint, path, f"r{r}/{m.replace(' ', '-')}/a.bin", sha, md5)
                off = startup if m == "s5cmd cp" else [0.0, 0.0]
                runs[m].append((sec - off[0], cpu - off[1], rss))
        load = os.getloadavg()
    print(f"\n{kind}: {size_mib} MiB, {rounds} interleaved rounds, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" + (f"; not installed: {', '.join(missing)}" if missing else ""))
    print(f"  {'client':18} {'min s':>7} {'median s':>8} {'MiB/s':>7} {'CPU s':>6} {'RSS MiB':>8}")
    best = {m: min(v[0] for v in rs) for m, rs in runs.items()}
    for m, rs in runs.items():
        note = f"  (start-up {startup[0]:.2f} s, {startup[1]:.2f} CPU-s taken off)" if m == "s5cmd cp" else ""
        print(f"  {m:18} {best[m]:7.2f} {statistics.median(v[0] for v in rs):8.2f} "
              f"{size_mib / best[m]:7.0f} {statistics.median(v[1] for v in rs):6.2f} "
              f"{max(v[2] for v in rs):8.0f}{note}")
    peers = {m: s for m, s in best.items() if m != "d4c"}
    top = min(peers, key=lambda m: peers[m])
    print(f"  d4c / best peer ({top}): {best['d4c'] / peers[top]:.2f} (goal <= 1.0); "
          + "; ".join(f"d4c / {m}: {best['d4c'] / peers[m]:.2f}" for m in peers)
          + f"; d4c peak RSS {max(v[2] for v in runs['d4c']):.0f} MiB (goal <= 128)")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server", choices=["moto", "sink", "both"], default="both")
    ap.add_argument("--child")
    ap.add_argument("--endpoint")
    ap.add_argument("--file", type=Path)
    ap.add_argument("--key")
    ap.add_argument("--sha", default="")
    ap.add_argument("--md5", default="")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.endpoint, args.file, args.key, args.sha, args.md5)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"artifact-{args.size_mib}MiB.bin"
    sha, md5 = make_file(path, args.size_mib * MiB)
    try:
        for kind in (["sink", "moto"] if args.server == "both" else [args.server]):
            bench(kind, path, sha, md5, args.rounds, args.size_mib)
    finally:
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
