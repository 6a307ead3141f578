"""Going past a limit fails the build: exit 1, one line naming the limit, no output.

Each transform sets out to pass one limit of its recipe's `limits:`: wall time
(sleeping, with a child deaf to SIGTERM), memory (a 1 GiB bytearray, a 1 GiB numpy
array, and 1 GiB spread over processes that each stay under the limit), processes
(fork 50 that block), output size (one 5 MiB file, and many files under the
per-file size). From the host: the build returned in bounded time, nothing of the
build is still running, and a host-side monitor saw the build's processes stay
within the limit.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import (
    Built,
    add_dataset,
    assert_no_output,
    error_line,
    find_processes,
    pss_kib,
    run_build,
)

MIB = 1 << 20


@dataclass
class Peak:
    processes: int = 0
    mib: float = 0.0  # the most memory the build's processes held at once
    over: float = 0.0  # seconds spent above the limit
    samples: int = 0


def held_kib(pids: list[int]) -> int:
    """Memory held by these processes: their PSS and every memfd they hold (counted once)."""
    total, seen = sum(pss_kib(p) for p in pids), set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:"):
                    continue
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks // 2
    return total


@contextmanager
def monitor(marker: str, limit_mib: float = float("inf")) -> Iterator[Peak]:
    """Sample, from the host, the processes that carry `marker` and the memory they hold."""
    peak, stop = Peak(), threading.Event()

    def run() -> None:
        last = time.monotonic()
        while not stop.is_set():
            pids = find_processes(marker)
            mib = held_kib(pids) / 1024
            now = time.monotonic()
            if mib > limit_mib:
                peak.over += now - last
            last = now
            peak.processes = max(peak.processes, len(pids))
            peak.mib = max(peak.mib, mib)
            peak.samples += 1
            stop.wait(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join(timeout=5)


# limit -> how the error line may name it, in any wording
NAMES = {
    "wall_time": r"wall[- ]time|limits\.wall_time",
    "memory": r"memory|limits\.memory",
    "processes": r"process|limits\.processes",
    "output_size": r"output[- ]size|limits\.output_size",
}


def failed_on_limit(built: Built, limit: str) -> str:
    """Exit 1, one `error:` line that names the limit, and no output."""
    line = error_line(built)
    assert re.search(NAMES[limit], line, re.IGNORECASE), \
        f"the line does not name the {limit} limit: {line}\n{built.err[-3000:]}"
    assert_no_output(built.out)
    return line


SLEEPER = '''\
import os
import signal
import subprocess
import sys
import time


def build(ctx):
    subprocess.Popen([sys.executable, "-I", "-c",
                      "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
                      {marker!r}], start_new_session=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("sleeping past the wall-time limit", file=sys.stderr, flush=True)
    time.sleep(600)
'''


@pytest.mark.timeout(120)
def test_wall_time(runner: str, repo: Path, marker: str, capfd: pytest.CaptureFixture[str]) -> None:
    ds = add_dataset(repo, f"wall-{runner}", SLEEPER.format(marker=marker), limits={"wall_time": "5s"})
    built = run_build(repo, ds, runner, capfd)
    failed_on_limit(built, "wall_time")
    assert "sleeping past the wall-time limit" in built.err  # it did start, then was stopped
    assert built.seconds < 30, f"the build took {built.seconds:.0f} s to stop"
    assert not find_processes(marker), "a process of the build survived the wall-time stop"


ALLOCATE = '''\
import sys


def build(ctx):
    print("allocating 1 GiB", file=sys.stderr, flush=True)
    {how}
    ctx.write_parquet("table", __import__("pandas").DataFrame({{"pruid": [len(block)]}}))
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("limit", "how"), [
    ("256MiB", "block = bytearray(1 << 30)"),
    ("512MiB", "block = bytearray(1 << 30)"),
    ("512MiB", "import numpy; block = numpy.ones(1 << 27)  # 8 bytes each"),
], ids=["256MiB-bytearray", "512MiB-bytearray", "512MiB-numpy"])
def test_memory(limit: str, how: str, runner: str, repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ds = add_dataset(repo, f"memory-{runner}", ALLOCATE.format(how=how), limits={"memory": limit})
    built = run_build(repo, ds, runner, capfd)
    failed_on_limit(built, "memory")
    assert "allocating 1 GiB" in built.err, "the transform never ran: the limit stopped the worker itself"


SPREAD = '''\
import subprocess
import sys

CHILD = """
import sys, time
print("ready", flush=True)
sys.stdin.read(1)  # all start together: the build goes from little to 900 MiB in a few milliseconds
block = b"x" * (150 << 20)  # touched: every page is resident
print("holding", len(block) >> 20, "MiB", flush=True)
time.sleep(2.5)
"""


def build(ctx):
    children = [subprocess.Popen([sys.executable, "-I", "-c", CHILD, {marker!r}], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(6)]
    for c in children:
        c.stdout.readline()
    for c in children:
        c.stdin.write("go")
        c.stdin.close()
    held = [c.stdout.readline().strip() for c in children]
    codes = [c.wait() for c in children]
    print("children:", held, codes, file=sys.stderr, flush=True)
    if any(codes):
        raise RuntimeError(f"children failed: {{codes}}")
    import pandas as pd
    df = pd.DataFrame({{"pruid": [1]}})
    ctx.write_parquet("table", df)
    ctx.write_csv("table-csv", df)
'''


@pytest.mark.timeout(120)
def test_memory_spread_over_processes(runner: str, repo: Path, marker: str,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    """Six processes of 150 MiB each: every one under 512 MiB, together 900 MiB. The limit is the build's.

    A watchdog that samples may let a burst past between two samples; it must not let the
    build stay past its limit: within a second, the build is stopped (or never got there).
    """
    ds = add_dataset(repo, f"spread-{runner}", SPREAD.format(marker=marker), limits={"memory": "512MiB"})
    with monitor(marker, limit_mib=512) as peak:
        built = run_build(repo, ds, runner, capfd)
    assert peak.processes >= 1, "the monitor never saw the attack's processes"
    assert peak.over < 1.0, (
        f"the build held more than its 512 MiB limit for {peak.over:.1f} s (at most {peak.mib:.0f} MiB; "
        f"exit {built.code}): {built.err[-1500:]}")
    failed_on_limit(built, "memory")


MEMFD = '''\
import os
import subprocess
import sys

CHILD = """
import os, sys, time
fd = os.memfd_create("d4c-held")
chunk = b"x" * (64 << 20)
for _ in range(16):  # 1 GiB of RAM that is mapped nowhere: no process's RSS or PSS shows it
    os.write(fd, chunk)
print("holding", os.fstat(fd).st_size >> 20, "MiB in a memfd", flush=True)
time.sleep(2.5)
"""


def build(ctx):
    child = subprocess.run([sys.executable, "-I", "-c", CHILD, {marker!r}], capture_output=True, text=True)
    print("child:", child.returncode, child.stdout.strip(), child.stderr.strip()[-300:], file=sys.stderr, flush=True)
    if child.returncode:
        raise RuntimeError(f"the child failed with status {{child.returncode}}")
    import pandas as pd
    df = pd.DataFrame({{"pruid": [1]}})
    ctx.write_parquet("table", df)
    ctx.write_csv("table-csv", df)
'''


@pytest.mark.timeout(120)
def test_memory_held_outside_any_process(runner: str, repo: Path, marker: str,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    """1 GiB written into a memfd under a 512 MiB limit: RAM all the same, though no RSS shows it."""
    ds = add_dataset(repo, f"memfd-{runner}", MEMFD.format(marker=marker), limits={"memory": "512MiB"})
    with monitor(marker, limit_mib=512) as peak:
        built = run_build(repo, ds, runner, capfd)
    assert peak.processes >= 1, "the monitor never saw the attack's process"
    assert peak.over < 1.0, (
        f"the build held more than its 512 MiB limit for {peak.over:.1f} s (at most {peak.mib:.0f} MiB; "
        f"exit {built.code}): {built.err[-1500:]}")
    failed_on_limit(built, "memory")


FORKER = '''\
import ctypes
import os
import sys
import time


def build(ctx):
    libc = ctypes.CDLL(None)
    started = 0
    print("forking 50 children", file=sys.stderr, flush=True)
    for _ in range(50):
        if os.fork() == 0:
            libc.prctl(15, {marker!r}.encode(), 0, 0, 0)  # PR_SET_NAME: the host can count us
            time.sleep(60)
            os._exit(0)
        started += 1
    print(f"started {{started}} children", file=sys.stderr, flush=True)
    import pandas as pd
    df = pd.DataFrame({{"pruid": [started]}})
    ctx.write_parquet("table", df)
    ctx.write_csv("table-csv", df)
'''


@pytest.mark.timeout(120)
def test_processes(runner: str, repo: Path, marker: str, capfd: pytest.CaptureFixture[str]) -> None:
    ds = add_dataset(repo, f"forks-{runner}", FORKER.format(marker=marker), limits={"processes": 8})
    with monitor(marker) as peak:
        built = run_build(repo, ds, runner, capfd)
    failed_on_limit(built, "processes")
    assert "forking 50 children" in built.err
    assert 1 <= peak.processes <= 8, f"the host saw {peak.processes} of the build's children at once"
    assert not find_processes(marker), "children of the build outlived it"


WRITER = '''\
def build(ctx):
    {how}
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [
    "ctx.output_path('table').write_bytes(b'x' * (5 << 20))",
    "[ctx.output_path('table').with_name(f'part-{i}').write_bytes(b'x' * (900 << 10)) for i in range(6)]",
    "import os; fd = os.open(ctx.output_path('table'), os.O_WRONLY | os.O_CREAT); os.ftruncate(fd, 5 << 20)",
], ids=["one-file", "many-files", "truncate"])
def test_output_size(how: str, runner: str, repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ds = add_dataset(repo, f"size-{runner}", WRITER.format(how=how), limits={"output_size": "1MiB"})
    built = run_build(repo, ds, runner, capfd)
    failed_on_limit(built, "output_size")
