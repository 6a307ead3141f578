"""Fixtures of the adversarial suite: both runners, a repository copy, planted canaries.

`runner` runs a test once per runner. The local runner needs bubblewrap; the
container runner needs podman (and debootstrap + runc for the locally made base
image, as in tests/test_container_build.py). In CI a missing tool fails the test.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from d4c.build.runners.container import ensure_image
from test_container_build import prepare_podman

from .helpers import OTHER, kill_processes

REPO = Path(__file__).resolve().parents[2]
RUNNERS = ("local", "container")
# Every credential variable d4c knows of, and the usual others of CI and cloud tools.
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ZENODO_TOKEN",
                   "GITHUB_TOKEN", "GH_TOKEN", "IA_ACCESS_KEY", "IA_SECRET_KEY", "S3_ACCESS_KEY",
                   "S3_SECRET_KEY", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
# Proxy settings carry credentials too (an authenticated proxy in front of a CI runner).
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "FTP_PROXY")


@pytest.fixture
def repo(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    return repo_copy


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest, repo: Path, require_tool: Callable[..., str],
           monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The runner under attack: every test of the suite runs against both.

    The container image is made here, before a test plants its canaries (a proxy
    variable pointing nowhere would break pip inside `podman build`), so that builds
    in the tests run against an existing image and time only the build itself.
    """
    name: str = request.param
    if name == "local":
        require_tool("bwrap")
        return name
    podman = prepare_podman(require_tool, monkeypatch, tmp_path_factory.mktemp("base-image"))
    ensure_image(repo, repo / "docker" / "Dockerfile", podman, dict(os.environ))
    return name


@pytest.fixture
def outside_tmp(token: str) -> Iterator[Path]:
    """A host folder outside /tmp: the sandboxes mount their own /tmp over the host's, so a
    secret under /tmp would stay hidden even if the sandbox bound the host's whole root."""
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix=f"d4csec-{token}-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def token() -> str:
    """A unique word per test: marks its files, processes and sockets."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Canary:
    """A secret planted everywhere a transform must not reach; `planted` is one it may read."""

    value: str
    home: Path
    aws_credentials: Path
    git_config: Path
    other_dataset_file: Path
    planted: str  # put inside the dataset folder itself: proves the attack's reports get out
    proxy: str  # a second secret, in the proxy variables only: a leak of those is told apart


@pytest.fixture
def canary(runner: str, repo: Path, outside_tmp: Path, monkeypatch: pytest.MonkeyPatch, token: str) -> Canary:
    """The canary in every credential variable, ~/.aws/credentials, .git/config and another dataset."""
    # Built from pieces, so that no attack source holds the whole word by accident.
    value = "d4c-" + "canary-" + uuid.uuid4().hex
    for var in CREDENTIAL_VARS:
        monkeypatch.setenv(var, f"{value}-{var}")
    proxy = "d4c-" + "canary-proxy-" + uuid.uuid4().hex
    for var in PROXY_VARS:  # nothing in a build goes on line: a proxy that does not exist is fine
        monkeypatch.setenv(var, f"http://ci:{proxy}@proxy.invalid:3128")
    home = outside_tmp / "home"
    (home / ".aws").mkdir(parents=True)
    creds = home / ".aws" / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {value}-id\naws_secret_access_key = {value}-file\n")
    os.chmod(creds, 0o600)
    (home / ".netrc").write_text(f"machine zenodo.org login x password {value}-netrc\n")
    monkeypatch.setenv("HOME", str(home))
    git_config = repo / ".git" / "config"
    with git_config.open("a") as fh:
        fh.write(f'[remote "mirror"]\n\turl = https://x-access-token:{value}-git@github.com/o/r.git\n')
    other = repo / "datasets" / OTHER / "credentials.txt"
    other.write_text(f"token={value}-other-dataset\n")
    return Canary(value, home, creds, git_config, other, planted="d4c-" + "canary-planted-" + token, proxy=proxy)


@pytest.fixture
def marker(token: str) -> str:
    """The mark of an attack's processes, in their argv or name (15 characters: a whole comm)."""
    return f"d4csec{token[:9]}"


@pytest.fixture(autouse=True)
def _no_process_outlives_the_test(marker: str) -> Iterator[None]:
    """Whatever an attack left running is killed (and the test that left it already failed)."""
    yield
    kill_processes(marker)
