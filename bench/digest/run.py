"""Benchmark: one-read digest vs md5 alone and vs the usual three separate reads.

On a 1 GiB file (page cache warm), measured side by side in one run, min and median of N
interleaved rounds, wall time and CPU seconds (this process and its children), with the
load average:
  (a) digest_file time / hashlib.md5 alone             goal <= 1.25
  (b) three separate reads / digest, three ways:        goal >= 2.5 against the best
      - coreutils: sha256sum + md5sum + torf generate (coreutils' SHA-256 here lacks the
        CPU's SHA extensions, which flatters the one read);
      - openssl dgst -sha256 + openssl dgst -md5 + torf generate (the same OpenSSL as hashlib);
      - three hashlib passes: sha256, md5, then SHA-1 per piece (exactly d4c's hashes, one
        file read per hash: the honest baseline, the same library for each pass)
  peak memory of digest_file (tracemalloc and RSS growth, in a fresh process)
                                                        goal <= 128 MiB
Usage: python bench/digest/run.py [--size-mib 1024] [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torf
from d4c.digest import DEFAULT_PIECE_SIZE, digest_file

MIB = 2**20


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU seconds) of every round per function, rounds interleaved so that load from
    other processes falls on every contender alike."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            cpu, start = _cpu(), time.perf_counter()
            fn()
            runs[name].append((time.perf_counter() - start, _cpu() - cpu))
    return runs


def md5_alone(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


def _pieces(path: Path) -> None:
    t = torf.Torrent(path, piece_size=DEFAULT_PIECE_SIZE, created_by=None, creation_date=None)
    t.generate()


def three_reads(path: Path) -> None:
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
    subprocess.run(["md5sum", str(path)], check=True, capture_output=True)
    _pieces(path)


def three_openssl(path: Path) -> None:
    for algo in ("-sha256", "-md5"):
        subprocess.run(["openssl", "dgst", algo, str(path)], check=True, capture_output=True)
    _pieces(path)


def three_hashlib(path: Path) -> None:
    for make in (hashlib.sha256, hashlib.md5):
        h = make()
        with open(path, "rb", buffering=0) as fh:
            while block := fh.read(4 * MIB):
                h.update(block)
    with open(path, "rb", buffering=0) as fh:  # SHA-1 per piece, as a torrent needs
        while block := fh.read(DEFAULT_PIECE_SIZE):
            hashlib.sha1(block).digest()


# VmHWM (this process image's RSS high-water mark); ru_maxrss would carry the
# parent's figure over fork+exec.
PEAK = """
import sys, tracemalloc
from d4c.digest import digest_file
def hwm():
    line = [x for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
    return int(line.split()[1]) * 1024
base = hwm()
tracemalloc.start()
digest_file(sys.argv[1])
traced = tracemalloc.get_traced_memory()[1]
print(traced, hwm() - base)
"""


def make_file(path: Path, size: int) -> None:
    block = os.urandom(16 * MIB)
    with open(path, "wb") as fh:
        # Vary each block so no hash sees a repeating input.
        fh.writelines(
            i.to_bytes(8, "little") + block[8 : min(len(block), size - i)]
            for i in range(0, size, len(block))
        )


def _ok(good: bool) -> str:
    return "ok" if good else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="d4c-bench-digest-") as tmp:
        path = Path(tmp) / "one-gib.bin"
        make_file(path, args.size_mib * MIB)
        md5_alone(path)  # warm the page cache
        d = digest_file(path)
        assert d.md5 == md5_alone(path)
        runs = measure({"md5": lambda: md5_alone(path), "digest": lambda: digest_file(path),
                        "coreutils": lambda: three_reads(path), "openssl": lambda: three_openssl(path),
                        "hashlib": lambda: three_hashlib(path)}, args.repeat)
        load = os.getloadavg()
        out = subprocess.run([sys.executable, "-c", PEAK, str(path)], check=True,
                             capture_output=True, text=True).stdout.split()
        traced, rss = int(out[0]), int(out[1])
    mb = args.size_mib * MIB / 1e6
    print(f"file: {args.size_mib} MiB, piece size {DEFAULT_PIECE_SIZE // MIB} MiB, min and median "
          f"of {args.repeat} interleaved rounds, {os.cpu_count()} cores, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    labels = {"md5": "hashlib.md5 alone", "digest": "one-read digest (sha256+md5+pieces)",
              "coreutils": "sha256sum + md5sum + torf generate",
              "openssl": "openssl dgst -sha256, -md5 + torf",
              "hashlib": "three hashlib passes (sha256, md5, sha1)"}
    print(f"  {'':42} {'wall min':>9} {'median':>8} {'CPU s':>7} {'MB/s':>6}")
    best = {k: min(w for w, _ in v) for k, v in runs.items()}
    for key, label in labels.items():
        walls = [w for w, _ in runs[key]]
        print(f"  {label:42} {best[key]:8.3f}s {statistics.median(walls):7.3f}s "
              f"{statistics.median(c for _, c in runs[key]):6.3f}s {mb / best[key]:6.0f}")
    ra = best["digest"] / best["md5"]
    print(f"(a) digest / md5 alone        = {ra:5.2f}   goal <= 1.25  {_ok(ra <= 1.25)}")
    for key in ("coreutils", "openssl", "hashlib"):
        rb = best[key] / best["digest"]
        print(f"(b) {key + ' / digest':26}= {rb:5.2f}   goal >= 2.5   {_ok(rb >= 2.5)}")
    print(f"peak memory: traced {traced / MIB:.1f} MiB, RSS growth {rss / MIB:.1f} MiB"
          f"   goal <= 128 MiB  {_ok(max(traced, rss) <= 128 * MIB)}")


if __name__ == "__main__":
    main()
