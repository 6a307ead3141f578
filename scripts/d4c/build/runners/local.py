"""The local runner: this Python environment inside a bubblewrap sandbox.

The sandbox has every namespace (pid, net, ipc, uts, cgroup; user unless d4c runs
as root), no capabilities, its own /proc and /dev, and a root file system made of
read-only binds of /usr, a few loader files of /etc, this interpreter and its
packages, the dataset snapshot and the sources. The output folder is the only
writable bind; /tmp is a size-capped tmpfs. When d4c runs as root, the worker
drops to uid 65534 before any dataset code runs (root's process limit is not
enforced by the kernel, and a root-owned file must stay out of reach). When the
worker ends, the pid namespace ends, and with it every process the build started.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from d4c.build.runners import (
    DEFAULT_ENVIRONMENT,
    SANDBOX_UID,
    Job,
    RunResult,
    environment_file,
    fixed_env,
    prepare_stage,
    shareable,
    snapshot_dataset,
    source_mounts,
    which_or_fail,
    worker_spec,
)
from d4c.build.runners.supervise import SHM_SIZE, read_outcome, supervise
from d4c.errors import D4CError

log = logging.getLogger("d4c.build")
_warned: set[str] = set()  # recipes already told about their environment (`--check` runs twice)

# /etc holds secrets on some hosts; the dynamic loader needs only these.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime")
HOW_TO_FIX = ("install bubblewrap (apt-get install bubblewrap) and allow user namespaces "
              "(sysctl kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0), "
              "or build with --runner container")


def python_binds() -> list[str]:
    """This interpreter, its standard library, its packages and d4c: read-only, at their paths."""
    import d4c

    roots = {sys.prefix, sys.exec_prefix, sys.base_prefix, os.path.dirname(d4c.__file__)}
    roots.update(p for p in sys.path if p and "site-packages" in p)
    real = sorted({os.path.realpath(r) for r in roots if os.path.isdir(r)})
    home = os.path.realpath(os.path.expanduser("~"))
    kept: list[str] = []
    for r in real:
        if r in ("/", home) or r.startswith("/usr/") or r == "/usr":
            continue  # /usr is bound whole; never the whole home folder
        if not any(r.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(r)
    return kept


MAX_LISTED = 4096  # files of one tree bound one by one; a bigger tree is bound whole


def _parents(paths: list[str]) -> list[str]:
    """Every folder above the bind points, made 0755 (bubblewrap copies the host's modes,
    and /root is 0700: the unprivileged sandbox user could not pass through it)."""
    found: set[str] = set()
    for p in paths:
        parent = os.path.dirname(p)
        while parent not in ("/", ""):
            found.add(parent)
            parent = os.path.dirname(parent)
    return sorted(found, key=lambda p: (p.count("/"), p))


def tree_binds(host: str, inside: str, reverse: bool) -> list[str] | None:
    """Bind a folder file by file onto the sandbox's tmpfs root, in a chosen order. A tmpfs
    lists a folder in the order its entries were made, so the transform sees the same order
    on every machine (ext4 lists by a per-filesystem hash seed) and `--check` can reverse it.
    None for a tree too big to bind one by one, or one holding anything but files and folders."""
    if not os.path.isdir(host) or os.path.islink(host):
        return None
    argv = ["--perms", "0755", "--dir", inside]
    count = 0
    with os.scandir(host) as it:
        entries = sorted(it, key=lambda e: e.name, reverse=reverse)
    for entry in entries:
        dest = f"{inside}/{entry.name}"
        if entry.is_symlink():
            return None
        if entry.is_dir():
            sub = tree_binds(entry.path, dest, reverse)
            if sub is None:
                return None
            argv += sub
            count += sub.count("--ro-bind")
        elif entry.is_file():
            argv += ["--ro-bind", entry.path, dest]
            count += 1
        else:
            return None
        if count > MAX_LISTED:
            return None
    return argv


def bwrap_argv(job: Job, dataset: Path, root: bool) -> list[str]:
    bwrap = which_or_fail("bwrap", HOW_TO_FIX)
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--hostname", job.variation.hostname, "--cap-drop", "ALL"]
    if root:  # the worker needs exactly these two to become uid 65534, then has none
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    ro: list[tuple[str, str]] = [("/usr", "/usr")]
    ro += [(f"/etc/{n}", f"/etc/{n}") for n in ETC_FILES if os.path.exists(f"/etc/{n}")]
    ro += [(p, p) for p in python_binds()]
    reverse = job.variation.listing == "reversed"
    trees = [(str(dataset), str(job.mount / "dataset"))]
    trees += sorted(((str(h), str(s)) for h, s in source_mounts(job)), reverse=reverse)
    dests = [d for _, d in ro + trees] + [str(job.mount / "out")]
    # The scratch tmpfs first: a Python install under /tmp must be bound on top of it, not hidden.
    argv += ["--perms", "1777", "--size", str(job.limits.memory), "--tmpfs", "/tmp"]
    for parent in (p for p in _parents(dests) if p != "/tmp"):
        argv += ["--perms", "0755", "--dir", parent]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        link = f"/{name}"
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    for host, inside in ro:
        argv += ["--ro-bind", host, inside]
    for host, inside in trees:  # made in order on the tmpfs root: that order is the listing
        argv += tree_binds(host, inside, reverse) or ["--ro-bind", host, inside]
    argv += ["--bind", str(job.stage), str(job.mount / "out"),
             "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(SHM_SIZE), "--tmpfs", "/dev/shm",
             "--remount-ro", "/", "--chdir", "/tmp"]
    return argv


@cache
def _probe(argv0: str, root: bool) -> str | None:
    """Why a minimal sandbox cannot be made here, or None when it can."""
    argv = [argv0, "--unshare-pid", "--unshare-net", "--die-with-parent", "--ro-bind", "/usr", "/usr",
            *([] if root else ["--unshare-user", "--disable-userns"]),
            *(["--symlink", os.readlink("/lib64"), "/lib64"] if os.path.islink("/lib64") else []),
            *(["--symlink", os.readlink("/lib"), "/lib"] if os.path.islink("/lib") else []),
            "--proc", "/proc", "--dev", "/dev", "/usr/bin/true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["no output"])[-1]


def warn_environment(job: Job) -> None:
    """The local runner has one environment, this machine's: a recipe that names another gets
    its build (a contributor's quick loop) with one warning, since its tools may differ from
    the pinned ones. The manifest records the tools that did run (`environment.tools`)."""
    env_file = environment_file(job.recipe)
    if env_file != DEFAULT_ENVIRONMENT and job.recipe.id not in _warned:
        _warned.add(job.recipe.id)
        log.warning("%s: the recipe's environment is %s, but the local runner runs this machine's tools "
                    "(their versions may differ from the pinned ones); build with --runner container to use %s",
                    job.recipe.id, env_file, env_file)


class LocalRunner:
    name = "local"

    def run(self, job: Job) -> RunResult:
        warn_environment(job)
        job = shareable(job)
        dataset, files = snapshot_dataset(job)
        python = sys.executable
        if not job.sandbox:  # `--no-sandbox`: host paths, nothing between the transform and this machine
            scratch = job.work / "scratch"
            scratch.mkdir()
            spec = worker_spec(job, str(dataset), {n: str(p.resolve()) for n, p in job.sources.items()},
                               str(job.stage), str(scratch), drop_to=None, files=files)
            argv = [python, "-m", "d4c.build.worker"]
            env = fixed_env(job.source_date_epoch, str(scratch), os.pathsep.join(
                [os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]), job.variation)
            kind = "none"
        else:
            root = os.geteuid() == 0
            argv = bwrap_argv(job, dataset, root)
            why = _probe(argv[0], root)
            if why:
                raise D4CError(f"cannot create the build sandbox: bubblewrap says {why!r}", hint=HOW_TO_FIX)
            prepare_stage(job, SANDBOX_UID if root else None)
            mounts = dict(zip(sorted(job.sources), (str(s) for _, s in source_mounts(job))))
            spec = worker_spec(job, str(job.mount / "dataset"), mounts, str(job.mount / "out"), "/tmp",
                               drop_to=SANDBOX_UID if root else None, files=files)
            env = fixed_env(job.source_date_epoch, "/tmp", os.pathsep.join(
                [os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]), job.variation)
            for key, value in sorted(env.items()):
                argv += ["--setenv", key, value]
            argv += [python, "-m", "d4c.build.worker"]
            kind = "bubblewrap"
        code, stdout, stopped = supervise(argv, spec, env, job, watch_memory=True)
        outcome = read_outcome(job, code, stdout, stopped)
        return RunResult(runner=self.name, sandbox=kind, network_isolation="bwrap" if job.sandbox else "none",
                         python=outcome["python"], packages=outcome["packages"], files=files,
                         tools=outcome["tools"])
