"""The host's side of one run: the worker under its limits, its log relayed, its outcome checked.

The wall-time, output-size and (local runner) memory limits are enforced here, from outside
the sandbox; the worker sets the rlimits inside it. What comes back (the outcome on stdout,
the log on stderr) is untrusted and treated so.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from d4c.build.limits import human
from d4c.build.runners import Job
from d4c.errors import D4CError

RESULT_MAX = 1 << 20  # the outcome is a few hundred bytes; anything past this is a forgery
LOG_MAX = 16 << 20  # bytes of transform output relayed to the log before it is cut
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")


def _dir_size(folder: Path) -> int:
    total = 0
    try:
        with os.scandir(folder) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                total += _dir_size(Path(entry.path)) if entry.is_dir(follow_symlinks=False) else st.st_size
    except OSError:
        pass  # a file vanishing under us: the next poll sees the rest
    return total


def _tree(root: int) -> list[int]:
    """`root` and every process below it, from /proc (a pid namespace hides nothing from here)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # it ended while we looked
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


SHM_SIZE = 64 << 20  # the sandbox's /dev/shm


def tree_memory(root: int, tmp_size: int) -> int:
    """Bytes of memory the process tree holds: the sum of PSS (shared pages counted once), plus
    memory no process maps: memfd files it holds open and what it keeps in the sandbox's tmpfs
    folders. (A tmpfs file that is also mapped counts twice: erring on the safe side.)"""
    total, memfds, own_ns = 0, set(), _mnt_ns("self")
    tmpfs_done = False
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:"):
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                    if (st.st_dev, st.st_ino) not in memfds:
                        memfds.add((st.st_dev, st.st_ino))
                        total += st.st_blocks * 512
            if not tmpfs_done and _mnt_ns(str(pid)) not in (None, own_ns):  # inside the sandbox
                # Until the sandbox has pivoted, its root is still the host's: count a folder only
                # when it is the tmpfs of exactly the size the sandbox was given.
                sized = [(f, n) for f, n in (("tmp", tmp_size), ("dev/shm", SHM_SIZE))
                         if (v := os.statvfs(f"/proc/{pid}/root/{f}")).f_blocks * v.f_frsize == n]
                for folder, _ in sized:
                    vfs = os.statvfs(f"/proc/{pid}/root/{folder}")
                    total += (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
                tmpfs_done = len(sized) == 2
        except (OSError, ValueError):
            continue  # it ended while we looked
    return total


def _mnt_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _relay(stream: IO[bytes], prefix: str) -> None:
    """Copy the transform's output to our stderr, one prefixed and cleaned line at a time."""
    sent = 0
    for raw in iter(stream.readline, b""):
        if sent > LOG_MAX:
            continue  # keep draining so the transform never blocks on a full pipe
        sent += len(raw)
        text = _CONTROL.sub("?", raw.decode("utf-8", "replace").rstrip("\r\n"))
        sys.stderr.write(f"{prefix}| {text}\n" if sent <= LOG_MAX else f"{prefix}| (output cut at {LOG_MAX} bytes)\n")
        sys.stderr.flush()


def supervise(argv: list[str], spec: dict[str, Any], env: dict[str, str], job: Job,
              kill: Callable[[], None] | None = None,
              watch_memory: bool = False) -> tuple[int, bytes, str | None]:
    """Run the worker under the wall-time, output-size and (`watch_memory`) memory limits.

    Memory: each process has an address-space cap, but many processes could each stay under
    it; so the local runner's whole process tree is measured here. The container's cgroup
    (`--memory`) does the same for the container runner.

    Returns (status, what the worker wrote on stdout, why it was stopped or None).
    The worker is the leader of its own process group, so a stop takes everything
    it started on this side of the sandbox; the sandbox takes the rest.
    """
    # cwd: the private work folder (conmon drops an `oom` file into its cwd after an OOM kill).
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True, cwd=job.work)
    assert proc.stdin and proc.stdout and proc.stderr
    out: list[bytes] = []

    def read_result() -> None:
        assert proc.stdout
        got = proc.stdout.read(RESULT_MAX + 1)
        out.append(got)
        while proc.stdout.read(1 << 16):
            pass

    threads = [threading.Thread(target=read_result, daemon=True),
               threading.Thread(target=_relay, args=(proc.stderr, f"  {job.recipe.id} "), daemon=True)]
    for t in threads:
        t.start()
    try:
        proc.stdin.write(json.dumps(spec, sort_keys=True).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the sandbox failed to start: its status and stderr say why
    limits, start, stopped = job.limits, time.monotonic(), None
    while proc.poll() is None:
        if time.monotonic() - start > limits.wall_time:
            stopped = f"ran longer than its wall-time limit ({human(limits.wall_time, 's')})"
        elif _dir_size(job.stage) > limits.output_size:
            stopped = f"wrote more than its output-size limit ({human(limits.output_size, 'B')})"
        elif watch_memory and tree_memory(proc.pid, limits.memory) > limits.memory:
            stopped = f"used more than its memory limit ({human(limits.memory, 'B')})"
        if stopped:
            if kill:
                kill()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            break
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    for t in threads:
        t.join(timeout=10)
    if stopped is None and _dir_size(job.stage) > limits.output_size:
        stopped = f"wrote more than its output-size limit ({human(limits.output_size, 'B')})"
    return proc.returncode, b"".join(out), stopped


_OUTCOME_KEYS = {"status": str, "message": str, "python": str, "packages": dict, "tools": dict}


def read_outcome(job: Job, returncode: int, stdout: bytes, stopped: str | None) -> dict[str, Any]:
    """The worker's outcome, checked like any untrusted answer, or one clear error."""
    tf = job.recipe.transform
    where = f"{job.recipe.folder.name}/{tf['python']}" if "python" in tf else f"{job.recipe.folder.name} command"
    hint_limits = "raise it under `limits:` in recipe.yaml if the build really needs more"
    if stopped:
        raise D4CError(f"the build was stopped: the transform {stopped}", where=where, hint=hint_limits)
    try:
        outcome = json.loads(stdout) if len(stdout) <= RESULT_MAX else None
    except ValueError:
        outcome = None
    if not isinstance(outcome, dict) or not all(
            isinstance(outcome.get(k, "" if k == "message" else None), t) for k, t in _OUTCOME_KEYS.items()):
        if returncode < 0 or returncode in (137, 139):
            sig = -returncode if returncode < 0 else returncode - 128
            raise D4CError(f"the transform was killed by signal {sig} (past the memory limit of "
                           f"{human(job.limits.memory, 'B')}?)", where=where, hint=hint_limits)
        raise D4CError(f"the build sandbox ended (status {returncode}) without a result",
                       where=where, hint="see the output above")
    packages, tools = ({str(k)[:100]: str(v)[:100] for k, v in list(outcome[key].items())[:200]}
                       for key in ("packages", "tools"))
    message = _CONTROL.sub("?", str(outcome.get("message", "")))[:2000]
    clean = {"status": outcome["status"], "message": message, "python": outcome["python"][:40],
             "packages": packages, "tools": tools}
    if clean["status"] == "violation":
        raise D4CError(f"sandbox violation: {message}", where=where)
    if clean["status"] != "ok":
        raise D4CError(f"transform failed: {message}", where=where,
                       hint="the transform's traceback is printed above")
    return clean
