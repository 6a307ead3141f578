"""The `local` target: same layout rules as a bucket, immutable keys, retain latest."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from d4c.errors import D4CError
from d4c.release.targets import Target, TargetConfig, make_target


def _target(root: Path) -> Target:
    return make_target(TargetConfig(kind="local", name="loc", url=root.as_uri() + "/{key}",
                                    retain="latest", options={"path": str(root)}))


def _file(path: Path, data: bytes) -> tuple[Path, str, str]:
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()


def test_upload_is_immutable_and_verified(tmp_path: Path) -> None:
    t = _target(tmp_path / "pub")
    a, asha, amd5 = _file(tmp_path / "a", b"one")
    _, bsha, _ = _file(tmp_path / "b", b"two")
    assert not t.exists("ca_x/v1.0.0/f", asha)
    t.upload("ca_x/v1.0.0/f", a, asha, amd5)
    assert t.exists("ca_x/v1.0.0/f", asha) and t.verify("ca_x/v1.0.0/f", asha)
    with pytest.raises(D4CError, match="exists with different content"):
        t.exists("ca_x/v1.0.0/f", bsha)
    (tmp_path / "pub/ca_x/v1.0.0/f").write_bytes(b"rot")  # a damaged copy
    assert not t.verify("ca_x/v1.0.0/f", asha)
    with pytest.raises(D4CError, match="escapes"):
        t.upload("../outside", a, asha, amd5)
    assert not list((tmp_path / "pub").rglob(".tmp-*"))
    assert t.public_url("ca_x/v1.0.0/a b.parquet").endswith("/pub/ca_x/v1.0.0/a%20b.parquet")


def test_retain_latest_removes_older_versions_and_their_folders(tmp_path: Path) -> None:
    root = tmp_path / "pub"
    t = _target(root)
    f, sha, md5 = _file(tmp_path / "f", b"x")
    for key in ["ca_x/v1.0.0/ca_x_v1.0.0.parquet", "ca_x/v1.1.0/ca_x_v1.1.0.parquet",
                "ca_xy/v1.0.0/ca_xy_v1.0.0.parquet", "sources/sha256/2d/2d71"]:
        t.upload(key, f, sha, md5)
    assert t.delete_older_versions("ca_x", "1.1.0") == ["ca_x/v1.0.0/ca_x_v1.0.0.parquet"]
    assert not (root / "ca_x/v1.0.0").exists()
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "ca_x/v1.1.0/ca_x_v1.1.0.parquet", "ca_xy/v1.0.0/ca_xy_v1.0.0.parquet", "sources/sha256/2d/2d71"]


def test_retain_latest_orders_by_semver_and_keeps_the_release_a_pre_release_would_replace(
        tmp_path: Path) -> None:
    root = tmp_path / "pub"
    t = _target(root)
    f, sha, md5 = _file(tmp_path / "f", b"x")
    versions = ["1.9.0", "1.10.0", "1.10.1-rc.1", "2.0.0-rc.1", "2.0.0-rc.2", "2.0.0", "2.1.0"]
    for v in versions:
        t.upload(f"ca_x/v{v}/ca_x_v{v}.parquet", f, sha, md5)
    # a pre-release replaces older pre-releases, never the newest release users have
    assert t.delete_older_versions("ca_x", "2.0.0-rc.2") == [
        "ca_x/v1.10.1-rc.1/ca_x_v1.10.1-rc.1.parquet", "ca_x/v1.9.0/ca_x_v1.9.0.parquet",
        "ca_x/v2.0.0-rc.1/ca_x_v2.0.0-rc.1.parquet"]
    # a version released after a newer one (a backport) removes nothing above it
    assert t.delete_older_versions("ca_x", "1.10.0") == []
    assert t.delete_older_versions("ca_x", "2.0.0") == [
        "ca_x/v1.10.0/ca_x_v1.10.0.parquet", "ca_x/v2.0.0-rc.2/ca_x_v2.0.0-rc.2.parquet"]
    assert sorted(p.parent.name for p in root.rglob("*.parquet")) == ["v2.0.0", "v2.1.0"]
