"""Shared test fixtures.

Tools: `require_tool("aria2c")` skips when a real tool is missing on a developer's
machine, and FAILS when CI=true: in CI every tool is installed by `make test`, so a
missing one is a broken set-up, never a reason to skip.

Isolation: every test gets its own source cache (D4C_CACHE) so no test reads or
writes the user's real cache.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_tool(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"required tool missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _require_tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    missing_tool(f"none of {', '.join(names)} is installed (make test-tools installs it)")
    raise AssertionError("unreachable")


@pytest.fixture
def require_tool() -> Callable[..., str]:
    """Return the path of the first of the named tools that exists; fail in CI if none."""
    return _require_tool


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_CACHE", str(tmp_path_factory.mktemp("d4c-cache")))


@pytest.fixture
def repo_copy(tmp_path: Path) -> Iterator[Path]:
    """A real git repository holding a copy of this project's tracked files (one commit)."""
    dst = tmp_path / "repo"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    git = ["git", "-c", "user.name=d4c-test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], cwd=dst, check=True, env=env)
    yield dst
