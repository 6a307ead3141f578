"""Benchmark: one-read digest vs md5 alone and vs the usual three separate reads.

On a 1 GiB file (page cache warm), measured side by side in one run, best of N:
  (a) digest_file time / hashlib.md5 alone             goal <= 1.25
  (b) (sha256sum + md5sum + torf generate) / digest     goal >= 2.5
  peak memory of digest_file (tracemalloc and RSS growth, in a fresh process)
                                                        goal <= 128 MiB
Usage: python bench/digest/run.py [--size-mib 1024] [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
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


def measure(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Best wall time (and the CPU seconds of that run) per function, rounds interleaved
    so that load from other processes falls on every contender alike."""
    best: dict[str, tuple[float, float]] = {name: (float("inf"), 0.0) for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            cpu, start = _cpu(), time.perf_counter()
            fn()
            wall = time.perf_counter() - start
            if wall < best[name][0]:
                best[name] = (wall, _cpu() - cpu)
    return best


def md5_alone(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


def three_reads(path: Path) -> None:
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
    subprocess.run(["md5sum", str(path)], check=True, capture_output=True)
    t = torf.Torrent(path, piece_size=DEFAULT_PIECE_SIZE, created_by=None, creation_date=None)
    t.generate()


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
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="d4c-bench-digest-") as tmp:
        path = Path(tmp) / "one-gib.bin"
        make_file(path, args.size_mib * MIB)
        md5_alone(path)  # warm the page cache
        d = digest_file(path)
        assert d.md5 == md5_alone(path)
        res = measure({"md5": lambda: md5_alone(path), "digest": lambda: digest_file(path),
                       "three": lambda: three_reads(path)}, args.repeat)
        out = subprocess.run([sys.executable, "-c", PEAK, str(path)], check=True,
                             capture_output=True, text=True).stdout.split()
        traced, rss = int(out[0]), int(out[1])
    mb = args.size_mib * MIB / 1e6
    print(f"load average before: {load[0]:.2f} (other work on the machine skews the figures)")
    print(f"file: {args.size_mib} MiB, piece size {DEFAULT_PIECE_SIZE // MIB} MiB, "
          f"best of {args.repeat}, {os.cpu_count()} cores")
    (t_md5, c_md5), (t_digest, c_digest), (t_three, c_three) = res["md5"], res["digest"], res["three"]
    print("                                          wall           CPU")
    print(f"  hashlib.md5 alone:                   {t_md5:7.3f} s  {c_md5:7.3f} s  ({mb / t_md5:5.0f} MB/s)")
    print(f"  one-read digest (sha256+md5+pieces): {t_digest:7.3f} s  {c_digest:7.3f} s  "
          f"({mb / t_digest:5.0f} MB/s)")
    print(f"  sha256sum + md5sum + torf generate:  {t_three:7.3f} s  {c_three:7.3f} s")
    ra, rb = t_digest / t_md5, t_three / t_digest
    print(f"(a) digest / md5 alone        = {ra:5.2f}   goal <= 1.25  {_ok(ra <= 1.25)}")
    print(f"(b) three reads / digest      = {rb:5.2f}   goal >= 2.5   {_ok(rb >= 2.5)}")
    print(f"peak memory: traced {traced / MIB:.1f} MiB, RSS growth {rss / MIB:.1f} MiB"
          f"   goal <= 128 MiB  {_ok(max(traced, rss) <= 128 * MIB)}")


if __name__ == "__main__":
    main()
