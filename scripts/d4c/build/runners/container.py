"""The container runner: the transform runs in the image built from docker/Dockerfile.

podman (preferred; docker works too) builds the image once per content of the
Dockerfile, lock and package (the tag is a hash of them), then runs the worker
with no network, no capabilities, a read-only root and an unprivileged user; the
sources and the dataset snapshot are mounted read-only and only the output folder
is writable (`hardening` lists every flag; docs/security.md explains them). The
image id goes into the manifest.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from d4c.build.runners import (
    SANDBOX_UID,
    Job,
    RunResult,
    fixed_env,
    prepare_stage,
    shareable,
    snapshot_dataset,
    source_mounts,
    worker_spec,
)
from d4c.build.runners.supervise import read_outcome, supervise
from d4c.errors import D4CError
from d4c.recipe import Recipe

IMAGE_REPO = "localhost/d4c-build"
CONTEXT_FILES = ("requirements.lock", "pyproject.toml", "README.md")
CONTAINER_PATH = "/opt/d4c/bin:/usr/local/bin:/usr/bin:/bin"


def engine() -> str:
    """podman or docker (D4C_CONTAINER_ENGINE chooses), or one clear error."""
    for name in filter(None, (os.environ.get("D4C_CONTAINER_ENGINE"), "podman", "docker")):
        found = shutil.which(name)
        if found:
            return found
    raise D4CError("the container runner needs podman or docker, and neither is installed",
                   hint="install podman (apt-get install podman runc) or use --runner local")


def _engine_env(root: Path, exe: str) -> dict[str, str]:
    env = dict(os.environ)
    conf = root / "docker" / "containers.conf"
    if Path(exe).name == "podman" and "CONTAINERS_CONF" not in env and conf.is_file():
        env["CONTAINERS_CONF"] = str(conf)  # runc and explicit ulimits (see the file)
    return env


def _context_files(root: Path, dockerfile: Path) -> list[tuple[str, Path]]:
    files = [("Dockerfile", dockerfile)] + [(n, root / n) for n in CONTEXT_FILES]
    pkg = root / "scripts" / "d4c"
    files += sorted((f"scripts/d4c/{p.relative_to(pkg).as_posix()}", p) for p in pkg.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    return files


def image_tag(root: Path, dockerfile: Path) -> str:
    """The image's tag: a hash of the base image name, the Dockerfile, the lock and the package."""
    h = hashlib.sha256(os.environ.get("D4C_BASE_IMAGE", "").encode() + b"\0")
    for rel, path in _context_files(root, dockerfile):
        h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return f"{IMAGE_REPO}:{h.hexdigest()[:16]}"


def dockerfile_of(root: Path, recipe: Recipe) -> Path:
    return root / str(recipe.data.get("environment") or "docker/Dockerfile")


def ensure_image(root: Path, dockerfile: Path, exe: str, env: dict[str, str]) -> str:
    """Build the image unless one with the same inputs exists; return its id (sha256:...)."""
    base = os.environ.get("D4C_BASE_IMAGE", "")
    files = _context_files(root, dockerfile)
    tag = image_tag(root, dockerfile)
    exists = subprocess.run([exe, "image", "inspect", tag], capture_output=True, env=env, check=False)
    if exists.returncode != 0:
        with tempfile.TemporaryDirectory(prefix="d4c-image-") as ctx:
            for rel, path in files:  # a minimal context: never the venv or build outputs
                (Path(ctx) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, Path(ctx) / rel)
            argv = [exe, "build", "-t", tag, "-f", str(Path(ctx) / "Dockerfile")]
            if base:
                argv += ["--build-arg", f"BASE_IMAGE={base}"]
            proc = subprocess.run([*argv, ctx], env=env, check=False)
            if proc.returncode != 0:
                raise D4CError(f"building the image from {dockerfile} failed (status {proc.returncode})",
                               hint="see the build log above")
    out = subprocess.run([exe, "image", "inspect", "--format", "{{.Id}}", tag],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    return out if out.startswith("sha256:") else f"sha256:{out}"


def hardening(job: Job, root: bool, exe: str = "podman") -> list[str]:
    """No capabilities or privilege gain, a read-only root, tmpfs /tmp, an unprivileged user,
    no network, and the build's limits as cgroup limits (the worker sets rlimits too)."""
    mem = str(job.limits.memory)
    user = ["--user", f"{SANDBOX_UID}:{SANDBOX_UID}"] if root else ["--userns=keep-id"]
    return ["--network=none", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only",
            "--read-only-tmpfs=false", "--tmpfs", f"/tmp:rw,nosuid,nodev,size={mem},mode=1777",
            *user, f"--pids-limit={job.limits.processes}", f"--memory={mem}", f"--memory-swap={mem}",
            "--ipc=private", f"--hostname={job.variation.hostname}", "--log-driver=none",
            # podman copies the host's *_PROXY variables (credentials included) into every
            # container unless told not to; docker does not, and has no such flag.
            *(["--http-proxy=false"] if Path(exe).name == "podman" else [])]


class ContainerRunner:
    name = "container"

    def run(self, job: Job) -> RunResult:
        exe = engine()
        env = _engine_env(job.repo_root, exe)
        image = ensure_image(job.repo_root, dockerfile_of(job.repo_root, job.recipe), exe, env)
        job = shareable(job)
        dataset, files = snapshot_dataset(job)
        root = os.geteuid() == 0
        prepare_stage(job, SANDBOX_UID if root else None)
        mounts = [(dataset.resolve(), job.mount / "dataset", "ro"), (job.stage.resolve(), job.mount / "out", "rw")]
        mounts += [(host, inside, "ro") for host, inside in source_mounts(job)]
        inside = dict(zip(sorted(job.sources), (str(s) for _, s in source_mounts(job))))
        spec = worker_spec(job, str(job.mount / "dataset"), inside, str(job.mount / "out"), "/tmp", drop_to=None, files=files)
        name = f"d4c-build-{uuid.uuid4().hex[:12]}"
        argv = [exe, "run", "--rm", "-i", "--name", name, *hardening(job, root, exe), "--workdir", "/tmp"]
        for host, target, mode in mounts:
            argv += ["--volume", f"{host}:{target}:{mode}"]
        for key, value in fixed_env(job.source_date_epoch, "/tmp", CONTAINER_PATH, job.variation).items():
            argv += ["--env", f"{key}={value}"]
        argv += [image, "/opt/d4c/bin/python", "-m", "d4c.build.worker"]

        def kill() -> None:
            subprocess.run([exe, "rm", "--force", "--time", "0", name], env=env, capture_output=True, check=False)

        code, stdout, stopped = supervise(argv, spec, env, job, kill=kill)
        kill()  # --rm already removed it; a container never outlives its build
        outcome = read_outcome(job, code, stdout, stopped)
        return RunResult(runner=self.name, sandbox="container", network_isolation="container",
                         python=outcome["python"], packages=outcome["packages"], image_id=image, files=files,
                         tools=outcome["tools"])
