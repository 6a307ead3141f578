"""A real BitTorrent client (aria2c) fetches every artifact of the demo release from its
torrent using only the web seeds (the S3 server over HTTP), and the bytes hash right."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torf
from d4c.release.orchestrate import release
from test_release_support import (  # noqa: F401 - fixtures
    S3_ENV,
    MotoS3,
    build_in,
    demo_build,
    fresh_repo,
    moto_s3,
    s3_target_yaml,
    write_config,
)


def test_aria2c_downloads_every_artifact_from_web_seeds_only(
        require_tool: Callable[..., str], demo_build: Path, moto_s3: MotoS3, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    aria2c = require_tool("aria2c")
    root = fresh_repo(demo_build, tmp_path / "repo")
    monkeypatch.setenv("D4C_REPO", str(root))
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    bucket = moto_s3.bucket("seed", public=True)
    cfg = write_config(tmp_path / "targets.yaml", s3_target_yaml("seed", moto_s3.endpoint, bucket))
    ids = sorted(p.name for p in (root / "datasets").iterdir() if (p / "recipe.yaml").is_file())
    checked = 0
    for ident in ids:
        build_in(root, ident)  # release publishes a build made beforehand; it never builds
        rec = release(ident, targets_file=cfg, echo=lambda line: None)
        assert rec is not None
        data = {f["file"]: f for f in rec["files"] if f["role"] == "data"}
        assert {t["file"] for t in rec["torrents"]} == set(data)
        for tor in rec["torrents"]:
            art = data[tor["file"]]
            meta = next(f for f in rec["files"] if f["role"] == "torrent" and f["file"] == tor["file"] + ".torrent")
            # fetch the torrent the way a user would: from the mirror
            tfile = tmp_path / meta["file"]
            key = meta["urls"]["seed"].split(f"/{bucket}/", 1)[1]
            tfile.write_bytes(moto_s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())
            torrent = torf.Torrent.read(tfile)
            assert list(torrent.webseeds) == [art["urls"]["seed"]] and not torrent.trackers
            assert torrent.infohash == tor["infohash"]
            out = tmp_path / f"dl-{ident}"
            proc = subprocess.run(
                [aria2c, "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                 "--enable-peer-exchange=false", "--seed-time=0",
                 "--console-log-level=warn", "--summary-interval=0", "--allow-overwrite=true",
                 f"--dir={out}", f"--torrent-file={tfile}"],
                check=False, capture_output=True, text=True, timeout=45)  # never exits on a bad seed
            assert proc.returncode == 0, proc.stdout + proc.stderr
            got = out / art["file"]
            assert hashlib.sha256(got.read_bytes()).hexdigest() == art["sha256"]
            checked += 1
    assert checked >= len(ids)
