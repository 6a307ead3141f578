"""The wheel: built from the checkout, installed into a fresh virtual environment outside it,
and run on a repository that holds only the demo datasets (and a targets config beside it).

`d4c validate`, `d4c build`, `d4c release` (local target) and `d4c verify` must each exit 0:
everything d4c reads besides the repository (the JSON Schemas, the SPDX list) ships in the
wheel or in a runtime dependency. The new environment is not a --system-site-packages one;
a .pth file puts this venv's site-packages on its path for the runtime dependencies only
(a plain path line: the .pth files there, the editable install of d4c among them, are not run).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, missing_tool
from test_release_support import DEMO, local_target_yaml, write_config

pytestmark = pytest.mark.slow


def _listed(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                          "--", *paths], cwd=REPO, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def _copy(rels: list[str], dest: Path) -> None:
    for rel in rels:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)


def _can_build_offline() -> bool:
    """setuptools builds wheels by itself from 70.1; before that it needs `wheel`."""
    probe = ("import setuptools, importlib.util as u; v = tuple(map(int, setuptools.__version__"
             ".split('.')[:2])); raise SystemExit(0 if v >= (70, 1) or u.find_spec('wheel') else 1)")
    return subprocess.run([sys.executable, "-c", probe], check=False,
                          capture_output=True).returncode == 0


def build_wheel(tmp: Path) -> Path:
    """`pip wheel` of a copy of the package sources (the checkout gets no build/ folder)."""
    src, dist = tmp / "src", tmp / "dist"
    _copy([r for r in _listed("scripts", "pyproject.toml", "README.md")
           if "__pycache__" not in r and ".egg-info" not in r], src)
    # Offline with this venv's setuptools when it can; else pip installs the build backend
    # pyproject.toml asks for, from the configured index, as `pip install .` does.
    isolation = [] if not _can_build_offline() else ["--no-build-isolation"]
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
                           "--quiet", "-w", str(dist), str(src)], check=False,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        missing_tool(f"cannot build the wheel (no usable setuptools offline?): {proc.stderr[-2000:]}")
    (wheel,) = dist.glob("d4c-*.whl")
    return wheel


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "d4c-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # pip comes from the .pth; --ignore-installed: never touch this venv's editable d4c
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--ignore-installed", "--no-warn-script-location", str(wheel)], check=True)
    return venv


def demo_repo(dest: Path) -> Path:
    """A fresh git repository holding only datasets/."""
    _copy(_listed("datasets"), dest)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    git = ["git", "-c", "user.name=d4c-test", "-c", "user.email=test@example.org"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "datasets"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True, env=env)
    return dest


def test_installed_wheel_validates_builds_releases_and_verifies(
        tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[..., str]) -> None:
    require_tool("bwrap")  # the local runner's sandbox
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], check=True,
                           capture_output=True, text=True).stdout
    for name in ("recipe", "manifest", "release", "targets", "stac-extensions"):
        assert f"d4c/schemas/{name}.schema.json" in names
    venv = fresh_venv(tmp, wheel)
    repo = demo_repo(tmp / "repo")
    targets = write_config(tmp / "targets.yaml", local_target_yaml("local", tmp / "publish"))
    env = {k: v for k, v in os.environ.items() if k not in {"D4C_REPO", "PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def d4c(*args: str) -> str:
        proc = subprocess.run([str(venv / "bin" / "d4c"), *args], cwd=repo, env=env,
                              check=False, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc.stdout

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import d4c; print(d4c.__file__)"],
                           cwd=repo, env=env, check=True, capture_output=True, text=True).stdout
    assert Path(where.strip()).is_relative_to(venv)  # the wheel's d4c, not the checkout's

    d4c("validate")
    d4c("build", DEMO)
    manifest = json.loads((repo / ".d4c" / "build" / DEMO / "v1.0.0" / "manifest.json").read_text())
    assert manifest["environment"]["dockerfile_sha256"] is None  # no docker/ in this repository
    assert manifest["environment"]["lock_sha256"] is None
    d4c("release", DEMO, "--targets", str(targets))
    record = repo / "releases" / DEMO / "1.0.0.json"
    assert record.is_file() and (tmp / "publish" / DEMO / "v1.0.0").is_dir()
    assert f"{DEMO} v1.0.0: identical" in d4c("verify", str(record.relative_to(repo)))
