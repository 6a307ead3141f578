"""Runners: where a transform's worker process runs (a Protocol, a registry, shared parts).

Both runners give the worker the same view: the dataset's code at /d4c/dataset (a
read-only copy of the bytes that were hashed), each source at /d4c/sources/<n>-<name>,
the output folder at /d4c/out (the only writable place besides a size-capped tmpfs
/tmp), the same fixed environment, and the same limits. The worker reads its spec
on stdin and writes its outcome on stdout; the transform's own output is relayed
line by line with a prefix, so it cannot pose as d4c (or as a CI workflow command).
Docs: docs/security.md.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol

from d4c.build.limits import DEFAULTS, Limits, human
from d4c.errors import D4CError
from d4c.recipe import Recipe

MOUNT = Path("/d4c")  # where the worker sees its files in a normal build
SANDBOX_UID = 65534  # "nobody": the uid a transform runs as when d4c itself runs as root
RESULT_MAX = 1 << 20  # the outcome is a few hundred bytes; anything past this is a forgery
LOG_MAX = 16 << 20  # bytes of transform output relayed to the log before it is cut
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")


@dataclass(frozen=True)
class Variation:
    """What the transform's world looks like. A normal build uses NORMAL; `--check` builds a
    second time with every field changed (as reprotest does), and the bytes must not move."""

    tz: str = "UTC"
    locale: str = "C.UTF-8"
    umask: int = 0o022
    mount: str = str(MOUNT)  # the build path: where dataset, sources and outputs appear
    hostname: str = "d4c-build"
    user: str = "d4c"
    cpus: int | None = None  # CPUs the transform may run on (None: all of this machine's)


NORMAL = Variation()
VARIED = Variation(tz="Pacific/Chatham", locale="fr_CA.UTF-8", umask=0o077, mount="/build/check-2/d4c",
                   hostname="d4c-check-2", user="d4c-check", cpus=1)


@dataclass(frozen=True)
class Job:
    """One transform run, in host paths."""

    recipe: Recipe
    repo_root: Path
    params: dict[str, Any]
    sources: dict[str, Path]  # verified source paths (files or extracted folders)
    stage: Path  # empty output folder; renamed into place by the caller on success
    work: Path  # private host folder: the dataset snapshot (and scratch without a sandbox)
    source_date_epoch: int
    sample: bool = False
    limits: Limits = DEFAULTS
    sandbox: bool = True  # False only with `d4c build --no-sandbox`: recorded, refused by release
    variation: Variation = NORMAL

    @property
    def mount(self) -> Path:
        return Path(self.variation.mount)


@dataclass(frozen=True)
class RunResult:
    runner: str
    sandbox: str  # bubblewrap | container | none
    network_isolation: str  # bwrap | container | none
    python: str
    packages: dict[str, str]
    image_id: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # dataset file -> sha256 of what ran


class Runner(Protocol):
    name: str

    def run(self, job: Job) -> RunResult: ...


RUNNERS: dict[str, str] = {
    "local": "d4c.build.runners.local:LocalRunner",
    "container": "d4c.build.runners.container:ContainerRunner",
}


def get_runner(name: str) -> Runner:
    if name not in RUNNERS:
        raise D4CError(f"unknown runner {name!r}", hint=f"use one of {', '.join(RUNNERS)}")
    module, _, cls = RUNNERS[name].partition(":")
    runner: Runner = getattr(importlib.import_module(module), cls)()
    return runner


def fixed_env(source_date_epoch: int, scratch: str, path: str, v: Variation = NORMAL) -> dict[str, str]:
    """The whole environment a transform sees: an allow-list, nothing inherited from the host."""
    return {
        "HOME": scratch,
        "LANG": v.locale,
        "LC_ALL": v.locale,
        "LOGNAME": v.user,
        "USER": v.user,
        "PATH": path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "TMPDIR": scratch,
        "TZ": v.tz,
        "XDG_CACHE_HOME": scratch,
        "GDAL_PAM_ENABLED": "NO",  # no .aux.xml side files next to rasters
    }


def snapshot_dataset(job: Job) -> tuple[Path, dict[str, str]]:
    """Copy the dataset's code into the work folder from the bytes that are hashed here.

    The recipe comes from the very bytes whose sha256 the manifest records; every other
    file (transform, helpers, scripts) is read once, hashed and written from that read.
    `sources/` is not code: sources reach the sandbox by hash, one mount each.
    """
    recipe = job.recipe
    raw = recipe.raw or recipe.path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != recipe.sha256:
        raise D4CError(f"{recipe.path} changed after it was read", hint="run the build again")
    dest = job.work / "dataset"
    dest.mkdir(parents=True)
    files: dict[str, str] = {}
    for path in sorted(recipe.folder.rglob("*")):
        rel = path.relative_to(recipe.folder)
        if rel.parts[0] in ("sources", "__pycache__") or "__pycache__" in rel.parts or path.is_dir():
            continue
        if path.is_symlink() or not path.is_file():
            raise D4CError(f"{path}: dataset folders hold regular files only (a link or device was found)",
                           hint="replace the link with the file itself")
        data = raw if rel == Path(recipe.path.name) else path.read_bytes()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, 0o755 if os.access(path, os.X_OK) else 0o644)
        files[rel.as_posix()] = hashlib.sha256(data).hexdigest()
    for folder in (dest, *(p for p in dest.rglob("*") if p.is_dir())):
        os.chmod(folder, 0o755)
    return dest, files


def shareable(job: Job) -> Job:
    """The job with every source readable by the sandbox's unprivileged user: a file kept in
    git under a strict umask (0600) is copied into the work folder as 0444 (the cache already
    is; extracted folders are normalised when unpacked)."""
    sources = dict(job.sources)
    for i, (name, path) in enumerate(sorted(job.sources.items())):
        if path.is_file() and not path.stat().st_mode & 0o004:
            copy = job.work / "sources" / f"{i}-{path.name}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            os.chmod(copy, 0o444)
            sources[name] = copy
    return replace(job, sources=sources)


def source_mounts(job: Job) -> list[tuple[Path, Path]]:
    """(host path, sandbox path) of every source: one mount each, named by position and name."""
    return [(path.resolve(), job.mount / "sources" / f"{i}-{Path(name).name}")
            for i, (name, path) in enumerate(sorted(job.sources.items()))]


def worker_spec(job: Job, dataset: str, sources: dict[str, str], out: str, scratch: str,
                drop_to: int | None, files: dict[str, str]) -> dict[str, Any]:
    """The worker's instructions, in the paths the worker sees."""
    recipe = job.recipe
    return {
        "dataset_id": recipe.id,
        "version": recipe.version,
        "transform": recipe.transform,
        "dataset_dir": dataset,
        "params": job.params,
        "sources": sources,
        "outputs": {
            o.name: {"format": o.format, "file": recipe.artifact_name(o), "sort_by": list(o.sort_by)}
            for o in recipe.outputs
        },
        "out_dir": out,
        "scratch": scratch,
        "workdir": os.path.join(scratch, "work" if job.variation == NORMAL else "work-check-2"),
        "umask": job.variation.umask,
        "cpus": job.variation.cpus,
        "guarded": [dataset],
        # The audit hook's courtesy check: data comes from declared sources, code from the folder.
        "readable": [*(os.path.join(dataset, f) for f in files if f.endswith(".py")),
                     os.path.join(dataset, "__pycache__"), *sources.values()],
        "source_date_epoch": job.source_date_epoch,
        "sample": job.sample,
        "limits": {"memory": job.limits.memory, "processes": job.limits.processes,
                   "output_size": job.limits.output_size},
        "drop_to": drop_to,
    }


def prepare_stage(job: Job, uid: int | None) -> None:
    """Let the sandbox user (not root) write the output folder, and nothing else of ours."""
    os.chmod(job.stage, 0o755)
    if uid is not None:
        os.chown(job.stage, uid, uid)


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


_OUTCOME_KEYS = {"status": str, "message": str, "python": str, "packages": dict}


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
    packages = {str(k)[:100]: str(v)[:100] for k, v in list(outcome["packages"].items())[:200]}
    message = _CONTROL.sub("?", str(outcome.get("message", "")))[:2000]
    clean = {"status": outcome["status"], "message": message, "python": outcome["python"][:40],
             "packages": packages}
    if clean["status"] == "violation":
        raise D4CError(f"sandbox violation: {message}", where=where)
    if clean["status"] != "ok":
        raise D4CError(f"transform failed: {message}", where=where,
                       hint="the transform's traceback is printed above")
    return clean


def which_or_fail(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise D4CError(f"the build sandbox needs {tool}, and it is not installed", hint=hint)
    return found
