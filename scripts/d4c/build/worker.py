"""The process a runner starts inside the sandbox: run one transform under its limits.

`python -m d4c.build.worker` reads its spec (JSON, paths as this process sees them)
on stdin and writes its outcome (JSON) on stdout; everything the transform prints
goes to stderr, which the host relays with a prefix. Before any dataset code runs,
the worker drops root (when it has it) and sets the resource limits, so the
transform cannot undo either.
"""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from d4c.build import reduce_cog, sandbox, tools
from d4c.build.context import BuildContext, OutputSpec, ShardView

# Native libraries inside wheels, recorded when the build loaded their module: module ->
# (manifest key, attribute holding the version). GDAL appears twice: each wheel bundles its own.
NATIVE = {"pyogrio": ("pyogrio:gdal", "__gdal_version_string__"), "rasterio": ("rasterio:gdal", "__gdal_version__"),
          "pyproj": ("pyproj:proj", "proj_version_str"), "shapely": ("shapely:geos", "geos_version_string")}


def _canonical(name: str) -> str:
    return canonicalize_name(name)


def _closure(root: str = "d4c") -> set[str]:
    """The installed distributions d4c needs at run time (its requirements, transitively)."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def versions() -> dict[str, Any]:
    """Python, the version of every distribution the build environment gives d4c, as installed
    where the worker runs (not a list kept here), and the command-line tools on its PATH."""
    pkgs = {}
    for name in sorted(_closure()):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "packages": pkgs, "tools": tools.versions()}


def _top_modules() -> set[str]:
    return {m.partition(".")[0] for m in list(sys.modules)}


def loaded_versions(before: set[str]) -> dict[str, str]:
    """After the transform: the distributions of the modules it loaded (`before` were loaded
    already) and the native libraries (GDAL, PROJ, GEOS) of the loaded wheels that bundle one."""
    found: dict[str, str] = {}
    owners = metadata.packages_distributions()
    for module in sorted(_top_modules()):
        for dist in owners.get(module, []) if module not in before else []:
            try:
                found[_canonical(dist)] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        if module in NATIVE:
            key, attr = NATIVE[module]
            value = getattr(sys.modules[module], attr, None)
            if value:
                found[key] = str(value)
    return found


class CommandFailed(RuntimeError):
    """A command transform exited non-zero: its own output already says why."""


def _env_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def _run_python(spec: dict[str, Any], ctx: BuildContext) -> None:
    file_name, _, func_name = spec["transform"]["python"].partition(":")
    path = Path(spec["dataset_dir"]) / file_name
    sys.dont_write_bytecode = True  # no __pycache__ in the repository
    sys.path.insert(0, spec["dataset_dir"])  # helper modules beside transform.py
    mod_spec = importlib.util.spec_from_file_location(f"d4c_transform_{_env_name(spec['dataset_id'])}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    func = getattr(module, func_name or "build", None)
    if not callable(func):
        raise TypeError(f"{file_name} has no function {func_name or 'build'!r}")
    func(ctx)


def _run_command(spec: dict[str, Any], ctx: BuildContext) -> None:
    # "./x" names a file in the dataset folder; the command itself runs in a fresh folder.
    argv = [os.path.join(spec["dataset_dir"], a[2:]) if a.startswith("./") else a
            for a in map(str, spec["transform"]["command"])]
    env = dict(os.environ)
    env.update({f"D4C_SOURCE_{_env_name(n)}": str(p) for n, p in ctx.sources.items()})
    env.update({f"D4C_OUTPUT_{_env_name(n)}": str(o.path) for n, o in ctx.outputs.items()})
    env["D4C_PARAMS"] = json.dumps(ctx.params, sort_keys=True)
    env.update({f"D4C_SAMPLE_BBOX_{_env_name(n)}": ",".join(map(repr, b)) for n, b in ctx.sample_bboxes.items()})
    try:
        proc = subprocess.run(argv, env=env, check=False)
    except OSError as exc:  # not on this environment's PATH, or not a program: one line, no traceback
        raise CommandFailed(f"transform command {argv[0]!r} could not start ({exc.strerror}); the build's "
                            f"PATH is {env.get('PATH', '')} (is it in the recipe's `environment:`?)") from None
    if proc.returncode:
        raise CommandFailed(f"transform command {argv[0]} exited with status {proc.returncode}")


def _check_outputs(spec: dict[str, Any], ctx: BuildContext) -> str | None:
    names = os.listdir(spec["out_dir"])
    # A shard writes its COG outputs as parts (any number, maybe none), for the reduce.
    parted = {n for n, o in ctx.outputs.items() if o.format == "cog" and ctx.shard is not None and ctx.shard.parts}
    expected = {o.path.name for n, o in ctx.outputs.items() if n not in parted}
    expected |= {p for n in parted for p in reduce_cog.part_names(names, ctx.outputs[n].path.name)}
    missing = sorted(n for n, o in ctx.outputs.items() if n not in parted and not o.path.is_file())
    if missing:
        return f"the transform did not write the declared output(s) {missing}"
    extra = sorted(set(names) - expected)
    if extra:
        return f"the transform wrote undeclared file(s) {extra} into its output folder"
    return None


def oom_kills() -> int | None:
    """How many processes the kernel killed for memory in this cgroup (a container's own: the
    cgroup namespace shows it at /sys/fs/cgroup), or None where it cannot be seen."""
    for path, key in (("/sys/fs/cgroup/memory.events", "oom_kill"),
                      ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")):
        try:
            with open(path, encoding="ascii") as fh:
                for line in fh:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def run(spec: dict[str, Any], found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the transform; return the outcome (never raises for the transform's faults)."""
    out_dir = Path(spec["out_dir"])
    ctx = BuildContext(
        dataset_id=spec["dataset_id"], version=spec["version"], params=spec["params"],
        sources={n: Path(p) for n, p in spec["sources"].items()},
        outputs={n: OutputSpec(n, o["format"], out_dir / o["file"], tuple(o["sort_by"]))
                 for n, o in spec["outputs"].items()},
        source_date_epoch=int(spec["source_date_epoch"]), sample=bool(spec.get("sample")),
        sample_bboxes={n: tuple(map(float, b)) for n, b in (spec.get("sample_bbox") or {}).items()},
        shard=ShardView.from_spec(spec.get("shard"), spec["sources"]),
    )
    policy = sandbox.Policy(
        writable=[os.path.realpath(p) for p in (spec["out_dir"], spec["scratch"])],
        guarded=[os.path.realpath(p) for p in spec["guarded"]],
        readable=[os.path.realpath(p) for p in spec["readable"]],
    )
    outcome: dict[str, Any] = {"status": "ok", **(found if found is not None else versions())}
    killed_before = oom_kills()
    loaded_before = _top_modules()
    sandbox.install(policy)
    try:
        (_run_python if "python" in spec["transform"] else _run_command)(spec, ctx)
    except BaseException as exc:  # noqa: BLE001 - the contributor's code may raise anything
        if isinstance(exc, CommandFailed):
            outcome.update(status="error", message=str(exc))
        elif isinstance(exc, MemoryError) and not policy.violations:
            # No traceback: formatting one needs the memory that just ran out. Dropping it frees
            # the transform's frames (and what they hold) before anything else is allocated.
            exc.__traceback__ = None
            del exc
            outcome.update(status="error", message=f"MemoryError: the transform ran out of memory (the build's "
                           f"limit is {spec['limits']['memory'] >> 20} MiB: `limits.memory`)")
            sys.stderr.write(f"transform raised {outcome['message']}\n")
        elif not policy.violations:
            policy.active = False
            tb = traceback.TracebackException.from_exception(exc)
            # Start at the contributor's code: the worker's own frames are noise to them.
            frames = list(tb.stack)
            first = next((i for i, f in enumerate(frames) if f.filename.startswith(spec["dataset_dir"])), 0)
            tb.stack = traceback.StackSummary.from_list(frames[first:])
            summary = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
                summary += f" (the build's process limit is {spec['limits']['processes']}: `limits.processes`)"
            elif isinstance(exc, OSError) and exc.errno == errno.EFBIG:
                summary += " (past the build's output-size limit: `limits.output_size`)"
            sys.stderr.write(f"transform {spec['transform']['python']} raised {summary}\n")
            sys.stderr.write("".join("    " + line for line in "".join(tb.format()).splitlines(True)))
            outcome.update(status="error", message=summary)
    policy.active = False
    outcome["packages"] = dict(sorted({**outcome["packages"], **loaded_versions(loaded_before)}.items()))
    killed_after = oom_kills()
    if killed_before is not None and killed_after is not None and killed_after > killed_before:
        # Whatever the transform made of its killed children, the cause is the limit.
        outcome.update(status="error", message=f"the build went past its memory limit of "
                       f"{spec['limits']['memory'] >> 20} MiB: the kernel killed {killed_after - killed_before} "
                       "of its processes (`limits.memory`)")
    elif policy.violations:
        outcome.update(status="violation", message=policy.violations[0])
    elif outcome["status"] == "ok":
        problem = _check_outputs(spec, ctx)
        if problem:
            outcome.update(status="error", message=problem)
    return outcome


def drop_privileges(uid: int | None) -> None:
    """Become `uid` for good (real, effective, saved; no groups): all capabilities go with root."""
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("d4c worker: could not drop root")


# Address space is not memory: libraries reserve far more than they touch (pandas and pyarrow
# map ~400 MB to use ~130 MB). The host measures real use (PSS) against the limit; this cap
# only stops one process's runaway allocation at once (a spike of up to the headroom above the
# limit can outlast one 0.2 s measurement).
AS_HEADROOM = 512 << 20


def set_limits(limits: dict[str, int]) -> None:
    """Hard limits (soft = hard): an unprivileged process can lower them, never raise them."""
    for res, value in ((resource.RLIMIT_AS, limits["memory"] + AS_HEADROOM), (resource.RLIMIT_NPROC, limits["processes"]),
                       (resource.RLIMIT_FSIZE, limits["output_size"]), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def main(argv: list[str]) -> int:
    result = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # print() in a transform goes to the log; stdout carries only the outcome
    spec = json.loads(sys.stdin.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    drop_privileges(spec.get("drop_to"))
    found = versions()  # before the limits: reading package metadata is the worker's cost, not the build's
    set_limits(spec["limits"])
    os.umask(int(spec.get("umask", 0o022)))
    if spec.get("cpus") and hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[: int(spec["cpus"])])
    os.makedirs(spec["workdir"], exist_ok=True)
    os.chdir(spec["workdir"])
    outcome = run(spec, found)
    result.write(json.dumps(outcome, sort_keys=True))
    result.close()
    return 0 if outcome["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
