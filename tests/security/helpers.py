"""Shared parts of the adversarial suite: attack datasets, builds, and host-side evidence.

An attack is a dataset (a copy of the population-density demo) whose transform tries
something a transform must never manage. Where the attack is expected to fail
quietly (a read, a write, a connection), the transform runs it in a fresh Python
(`python -I attack.py`): no audit hook there, so only the sandbox itself can stop
it. The attack prints one JSON line per attempt; the transform turns them into its
two outputs (Parquet and CSV), so the host reads back what was tried and what
came of it. Every test then proves the failure from the host side.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from d4c.cli import main

TEMPLATE = "ca_statcan_2021_population-density_provinces"
OTHER = "ca_d4c_provinces-territories"

# The transform that runs attack.py without the audit hook and reports what it printed.
REPORTING_TRANSFORM = '''\
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd


def build(ctx):
    attack = Path(__file__).with_name("attack.py")
    proc = subprocess.run([sys.executable, "-I", str(attack)], capture_output=True, text=True,
                          errors="replace", timeout=300)
    sys.stderr.write(proc.stdout)  # what it read goes to the log as well: the log is checked too
    sys.stderr.write(proc.stderr)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    rows.append({"attack": "attack.py exit status", "result": str(proc.returncode)})
    df = pd.DataFrame({"pruid": list(range(len(rows))),
                       "attack": [r["attack"] for r in rows],
                       # one line per cell: d4c cannot read back a CSV with a line break in a value
                       "result": [json.dumps(r["result"], ensure_ascii=False) for r in rows]})
    ctx.write_parquet("table", df)
    ctx.write_csv("table-csv", df)
'''

# The top of every attack.py: raw libc (ctypes) and a one-line-per-attempt report.
ATTACK_PRELUDE = '''\
import ctypes
import errno
import json
import os
import sys

CONFIG = json.loads({config!r})
libc = ctypes.CDLL(None, use_errno=True)
libc.open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
libc.write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
libc.read.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
libc.unlink.argtypes = [ctypes.c_char_p]
libc.rename.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def report(attack, result):
    print(json.dumps({{"attack": str(attack), "result": str(result)[:100000]}}), flush=True)


def last_errno():
    e = ctypes.get_errno()
    return "refused " + errno.errorcode.get(e, str(e))


def pids():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def raw_read(path, limit=1 << 20):
    """libc open + read: the audit hook never sees these."""
    fd = libc.open(os.fsencode(path), os.O_RDONLY, 0)
    if fd < 0:
        return None, last_errno()
    buf = ctypes.create_string_buffer(limit)
    n = libc.read(fd, buf, limit)
    libc.close(fd)
    if n < 0:
        return None, last_errno()
    return buf.raw[:n], "read %d bytes" % n


def raw_write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_APPEND):
    fd = libc.open(os.fsencode(path), flags, 0o644)
    if fd < 0:
        return last_errno()
    n = libc.write(fd, data, len(data))
    libc.close(fd)
    return "WROTE %d bytes" % n if n >= 0 else last_errno()


def via_other_processes(path):
    """The same host path through every process's root and cwd (the old /proc/<pid>/root hole)."""
    found = [path]
    for pid in pids():
        found.append(f"/proc/{{pid}}/root{{path}}")
        found.append(f"/proc/{{pid}}/cwd/" + "../" * 12 + path.lstrip("/"))
    return found

'''


def attack_source(config: Mapping[str, object], body: str) -> str:
    """attack.py: the prelude (with `config` as CONFIG) and the attack itself."""
    return ATTACK_PRELUDE.format(config=json.dumps(config)) + body


def add_dataset(repo: Path, name: str, transform: str, files: dict[str, str] | None = None,
                limits: dict[str, object] | None = None) -> str:
    """A copy of the population-density dataset under a new id, with its own transform."""
    dataset_id = f"ca_test_{name}"
    folder = repo / "datasets" / dataset_id
    shutil.copytree(repo / "datasets" / TEMPLATE, folder)
    recipe = folder / "recipe.yaml"
    text = recipe.read_text().replace(f"id: {TEMPLATE}", f"id: {dataset_id}")
    if limits:
        text += "limits:\n" + "".join(f"  {k}: {v}\n" for k, v in limits.items())
    recipe.write_text(text)
    (folder / "transform.py").write_text(transform)
    for rel, content in (files or {}).items():
        (folder / rel).write_text(content)
    return dataset_id


@dataclass
class Built:
    code: int
    out_text: str  # captured stdout
    err: str  # captured stderr (d4c's log and the transform's relayed output)
    out: Path
    seconds: float

    @property
    def log(self) -> str:
        return self.out_text + self.err


def run_build(repo: Path, dataset_id: str, runner: str, capfd: pytest.CaptureFixture[str],
              out: Path | None = None) -> Built:
    out = out or repo / "out" / dataset_id
    capfd.readouterr()
    start = time.monotonic()
    code = main(["build", dataset_id, "--runner", runner, "--out", str(out)])
    seconds = time.monotonic() - start
    captured = capfd.readouterr()
    return Built(code, captured.out, captured.err, out, seconds)


def error_line(built: Built) -> str:
    """The build failed with exit 1 and one clear `error:` line at the end (no traceback)."""
    assert built.code == 1, f"expected a failed build (exit 1), got {built.code}\n{built.err[-4000:]}"
    lines = built.err.strip().splitlines()
    assert lines, "no error output at all"
    last = lines[-1]
    assert last.startswith("error: "), f"last line is not one `error:` line: {last!r}\n{built.err[-4000:]}"
    assert not [ln for ln in lines if ln.startswith("Traceback")], "d4c itself printed a traceback"
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, f"more than one error line: {errors}"
    return last


def assert_no_output(out: Path) -> None:
    assert not os.path.lexists(out), f"{out} exists after a failed build"
    left = [p.name for p in out.parent.glob(f".{out.name}*")] if out.parent.is_dir() else []
    assert not left, f"staging folder left behind: {left}"


def read_report(out: Path) -> list[tuple[str, str]]:
    """The (attack, result) rows the transform wrote into its Parquet output."""
    (parquet,) = out.glob("*.parquet")
    table = pq.read_table(parquet).sort_by("pruid").to_pydict()
    return [(a, json.loads(r)) for a, r in zip(table["attack"], table["result"], strict=True)]


def results(report: list[tuple[str, str]], prefix: str) -> dict[str, str]:
    return {a: r for a, r in report if a.startswith(prefix)}


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every entry under `folder`, never following links: files by content, others by kind."""
    found: dict[str, bytes] = {}
    if not os.path.lexists(folder):
        return found
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                found[path] = b"symlink -> " + os.fsencode(os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    found[path] = fh.read()
    return found


def tree_hashes(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every regular file under `folder` (links and modes recorded too)."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        rel_dir = os.path.relpath(dirpath, folder)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) not in skip]
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.relpath(path, folder))
            st = os.lstat(path)
            if os.path.islink(path):
                found[rel] = "link:" + os.readlink(path)
            else:
                with open(path, "rb") as fh:
                    found[rel] = f"{st.st_mode:o}:" + hashlib.sha256(fh.read()).hexdigest()
    return found


def leak_forms(secret: str) -> list[bytes]:
    """The canary as an attacker might smuggle it past a plain grep or the log redaction."""
    raw = secret.encode()
    return [raw, raw.hex().encode(), raw[::-1], secret.upper().encode()]


def assert_absent(secret: str, blobs: dict[str, bytes]) -> None:
    forms = leak_forms(secret)
    hits = {}
    for name, data in sorted(blobs.items()):
        for form in forms:
            at = data.find(form)
            if at >= 0:  # where, and the bytes around it: which secret it was and how it got there
                hits[name] = data[max(0, at - 120):at + len(form) + 40]
                break
    assert not hits, f"the canary {secret!r} reached {sorted(hits)}: {hits}"


def find_processes(marker: str) -> list[int]:
    """Host pids whose command line or name holds `marker` (scanned from the host's /proc)."""
    hits = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{entry}/comm", "rb") as fh:
                comm = fh.read()
        except OSError:
            continue
        if marker.encode() in cmdline or marker.encode() in comm:
            hits.append(int(entry))
    return hits


def kill_processes(marker: str) -> list[int]:
    found = find_processes(marker)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size of one host process (shared pages counted once overall)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
