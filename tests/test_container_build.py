"""The container runner gives the same bytes as the local runner (podman, real image).

The base image is made locally (no registry is reachable): debootstrap of Debian
bookworm imported into podman, cached by image name between runs; the d4c image is
built from docker/Dockerfile on top of it (pip installs the lock from PyPI) and
cached by the hash of its inputs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from d4c.cli import main

BASE = "localhost/d4c-bookworm-min"
REPO = Path(__file__).resolve().parent.parent
DATASETS = ("ca_d4c_provinces-territories", "ca_statcan_2021_population-density_provinces")


def ensure_base_image(podman: str, env: dict[str, str], tmp: Path) -> None:
    if subprocess.run([podman, "image", "exists", BASE], env=env, check=False).returncode == 0:
        return
    root = tmp / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root)],
                   check=True, capture_output=True, timeout=600)
    # The host's own CAs (e.g. a TLS-inspecting proxy in front of PyPI) go along, so
    # that pip inside the image build trusts what the host trusts.
    local_cas = Path("/usr/local/share/ca-certificates")
    if local_cas.is_dir():
        shutil.copytree(local_cas, root / "usr/local/share/ca-certificates", dirs_exist_ok=True)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run([podman, "import", "-", BASE], stdin=tar.stdout, env=env, check=True,
                   capture_output=True, timeout=600)
    assert tar.wait() == 0


def prepare_podman(require_tool: Callable[..., str], monkeypatch: pytest.MonkeyPatch, tmp: Path) -> str:
    """podman with runc and the locally made base image, set up for d4c's container runner."""
    podman = require_tool("podman")
    require_tool("debootstrap")
    require_tool("runc")
    monkeypatch.setenv("CONTAINERS_CONF", str(REPO / "docker" / "containers.conf"))
    monkeypatch.setenv("D4C_BASE_IMAGE", BASE)
    monkeypatch.setenv("D4C_CONTAINER_ENGINE", "podman")
    ensure_base_image(podman, dict(os.environ), tmp)
    return podman


@pytest.fixture
def podman_env(require_tool: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return prepare_podman(require_tool, monkeypatch, tmp_path)


@pytest.mark.timeout(1800)
def test_container_and_local_builds_are_identical(
    podman_env: str, repo_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    for dataset in DATASETS:
        outs = {}
        for runner in ("local", "container"):
            out = repo_copy / "out" / runner / dataset
            assert main(["build", dataset, "--runner", runner, "--out", str(out)]) == 0, capsys.readouterr().err
            outs[runner] = json.loads((out / "manifest.json").read_text())
        local, container = outs["local"], outs["container"]
        assert container["environment"]["runner"] == "container"
        assert container["environment"]["network_isolation"] == "container"
        assert container["environment"]["image_id"].startswith("sha256:")
        assert local["environment"]["image_id"] is None
        assert [(o["file"], o["sha256"]) for o in local["outputs"]] == \
            [(o["file"], o["sha256"]) for o in container["outputs"]]
        assert local["environment"]["packages"] == container["environment"]["packages"]


@pytest.mark.timeout(1800)
def test_container_transform_failure_is_clear(
    podman_env: str, repo_copy: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    folder = repo_copy / "datasets" / DATASETS[1]
    (folder / "transform.py").write_text(
        "import socket\n\ndef build(ctx):\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
    )
    out = repo_copy / "out"
    assert main(["build", DATASETS[1], "--runner", "container", "--out", str(out)]) == 1
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert "sandbox violation: the transform opened a network connection" in err and "127.0.0.1:9" in err
    assert not out.exists()
