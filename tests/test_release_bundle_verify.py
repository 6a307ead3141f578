"""`d4c verify BUNDLE`: the source bundle of a release rebuilds the artifacts, bit for bit."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from d4c.cli import main
from d4c.release.orchestrate import release
from test_release_support import DEMO, demo_build, fresh_repo  # noqa: F401 - fixture


@pytest.mark.parametrize("runner", ["local", "container"])
@pytest.mark.timeout(1800)
def test_bundle_alone_rebuilds_the_released_artifacts(runner: str, demo_build: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      require_tool: Callable[..., str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Also in the container: the image is built from the bundle's own docker/, lock and
    code (its README.md is the one the package metadata needs), outside any checkout."""
    if runner == "container":
        from test_container_build import prepare_podman

        prepare_podman(require_tool, monkeypatch, tmp_path)
    root = fresh_repo(demo_build, tmp_path / "repo")
    monkeypatch.setenv("D4C_REPO", str(root))
    rec = release(DEMO, echo=lambda line: None)  # the default target: .d4c/publish
    assert rec is not None
    bundle = next(f for f in rec["files"] if f["role"] == "bundle")
    published = root / ".d4c" / "publish" / DEMO / "v1.0.0" / bundle["file"]
    # a stranger holds only the bundle: no checkout, no build folder, an empty cache
    alone = tmp_path / "elsewhere" / bundle["file"]
    alone.parent.mkdir()
    shutil.copy(published, alone)
    shutil.rmtree(root)
    monkeypatch.delenv("D4C_REPO")
    monkeypatch.chdir(alone.parent)
    capsys.readouterr()
    assert main(["verify", str(alone), "--runner", runner]) == 0
    out = capsys.readouterr().out
    data = next(f for f in rec["files"] if f["role"] == "data")
    assert f"identical  {data['file']}  sha256:{data['sha256']}" in out
    assert f"{DEMO} v1.0.0: identical" in out


def test_verify_refuses_a_file_that_is_not_a_bundle(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "x_source.tar.gz"
    fake.write_bytes(b"not gzip")
    assert main(["verify", str(fake)]) == 1
    err = capsys.readouterr().err
    assert "cannot unpack bundle" in err and "Traceback" not in err


def test_a_bundle_whose_manifest_points_outside_datasets_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import json
    import tarfile

    from catalog_factory import make_record

    manifest = make_record("ca_x_y", "1.0.0")["manifest"]
    manifest["dataset"]["recipe_path"] = "../../../etc/recipe.yaml"
    raw = json.dumps(manifest).encode()
    bundle = tmp_path / "ca_x_y_v1.0.0_source.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        info = tarfile.TarInfo("ca_x_y_v1.0.0_source/manifest.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    assert main(["verify", str(bundle)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is outside datasets/" in err[0], err
