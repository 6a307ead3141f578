"""`d4c release` end to end with the three service targets (fake Zenodo, Internet Archive,
GitHub) behind a local primary: each run crashes right after the first side effect of a
service target it has not crashed at yet (the world keeps every crash), until a run
completes, and the world ends with one Zenodo version, one GitHub release with each
asset once, each file once on archive.org, one record; canary credentials appear nowhere."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from d4c.cli import main
from d4c.release.orchestrate import release
from fakes.github import FakeGitHub
from fakes.internet_archive import FakeInternetArchive
from fakes.zenodo import FakeZenodo
from test_release_support import DEMO, demo_build, fresh_repo, local_target_yaml, write_config  # noqa: F401

# Built at run time, never written literally: the repo copy under test holds this file.
CANARY = "CANARY" + hashlib.sha256(b"d4c services").hexdigest()[:10]
ENV = {"ZENODO_TOKEN": CANARY + "zen", "GITHUB_TOKEN": CANARY + "gh",
       "IA_ACCESS_KEY": CANARY + "iaA", "IA_SECRET_KEY": CANARY + "iaS"}


class Crash(BaseException):
    """A forced crash: BaseException so that no `except Exception` in d4c can swallow it."""


class Services:
    def __init__(self) -> None:
        self.zenodo = FakeZenodo(ENV["ZENODO_TOKEN"])
        self.ia = FakeInternetArchive(ENV["IA_ACCESS_KEY"], ENV["IA_SECRET_KEY"])
        self.github = FakeGitHub(ENV["GITHUB_TOKEN"])
        for fake in (self.zenodo, self.ia, self.github):
            fake.start()

    def stop(self) -> None:
        for fake in (self.zenodo, self.ia, self.github):
            fake.stop()

    def config(self, path: Path, publish: Path) -> Path:
        return write_config(
            path, local_target_yaml("mirror", publish),
            f"  - name: zenodo\n    kind: zenodo\n    credentials: {{token: ZENODO_TOKEN}}\n"
            f"    options: {{base_url: \"{self.zenodo.url}\", index_lag_seconds: 0.1}}\n",
            f"  - name: ia\n    kind: internet-archive\n"
            f"    credentials: {{access: IA_ACCESS_KEY, secret: IA_SECRET_KEY}}\n"
            f"    options: {{s3_url: \"{self.ia.url}\", archive_url: \"{self.ia.url}\", settle_seconds: 5}}\n",
            f"  - name: github\n    kind: github\n    credentials: {{token: GITHUB_TOKEN}}\n"
            f"    options: {{repo: dataforcanada/d4c, api_url: \"{self.github.url}\", web_url: \"{self.github.url}\"}}\n")


@pytest.fixture
def world(demo_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Services, Path]]:
    root = fresh_repo(demo_build, tmp_path / "repo")
    monkeypatch.setenv("D4C_REPO", str(root))
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    services = Services()
    try:
        yield root, services, services.config(tmp_path / "targets.yaml", tmp_path / "publish")
    finally:
        services.stop()


def check(root: Path, s: Services) -> dict[str, Any]:
    rec = dict(json.loads((root / "releases" / DEMO / "1.0.0.json").read_text()))
    names = sorted(f["file"] for f in rec["files"])
    (zen,) = s.zenodo.records.values()
    assert zen.published and sorted(zen.files) == names
    assert rec["doi"] == zen.doi and rec["concept_doi"] == f"10.5072/zenodo.{zen.parent}"
    (rel,) = s.github.releases.values()
    assert not rel["draft"] and sorted(rel["assets"]) == names
    assert all(a["state"] == "uploaded" for a in rel["assets"].values())
    assert rec["github_release"] == f"{s.github.url}/dataforcanada/d4c/releases/tag/{DEMO}/v1.0.0"
    (item,) = s.ia.items.values()
    assert sorted(item["files"]) == names
    for f in rec["files"]:
        assert set(f["urls"]) == {"mirror", "zenodo", "ia", "github"}
        assert f["urls"]["zenodo"] == f"{s.zenodo.url}/records/{zen.id}/files/{f['file']}?download=1"
    (torrent,) = rec["torrents"]
    seeds = torrent["magnet"].count("ws=")
    assert seeds == 3  # zenodo, archive.org and the GitHub asset: every http(s) retain-all copy
    return rec


def test_crash_after_every_side_effect_converges(world: tuple[Path, Services, Path]) -> None:
    root, services, config = world
    crashed: list[str] = []
    for _ in range(100):

        def crash_at_new(what: str) -> None:
            mine = any(w in what for w in ("zenodo", "ia", "github"))
            if mine and what not in crashed:
                crashed.append(what)
                raise Crash(what)  # die right after a side effect not crashed at before

        try:
            release(DEMO, targets_file=config, on_side_effect=crash_at_new, echo=lambda line: None)
            break
        except Crash:
            continue
    expected = {"zenodo: draft 102 created", "zenodo: DOI reserved", "prepare zenodo", "prepare ia",
                "github: draft release created", "zenodo: published", "github: release published",
                f"upload:zenodo:{DEMO}_v1.0.0.parquet.torrent",
                f"upload:github:{DEMO}/v1.0.0/{DEMO}_v1.0.0_source.tar.gz"}
    assert expected <= set(crashed), crashed
    assert len(crashed) >= 25
    check(root, services)
    creates = [e for e in services.github.log if e[0] == "POST" and e[1].endswith("/releases")]
    assert len(creates) == 1
    assert len([e for e in services.zenodo.log if e[1].endswith("/actions/publish") and e[2] == 202]) == 1


def test_canary_credentials_never_appear(world: tuple[Path, Services, Path], tmp_path: Path,
                                         capfd: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture) -> None:
    root, services, config = world
    caplog.set_level(logging.DEBUG)
    assert main(["-v", "release", DEMO, "--targets", str(config)]) == 0
    check(root, services)
    services.github.token = "rotated"  # a failing run: the error line must not carry it either
    (root / "releases" / DEMO / "1.0.0.json").unlink()
    for journal in (root / ".d4c").rglob("*journal*"):
        if journal.is_file():
            journal.unlink()
    for path in (tmp_path / "publish").rglob("*journal*"):
        path.unlink()
    assert main(["release", DEMO, "--targets", str(config)]) == 1
    out, err = capfd.readouterr()
    assert "401" in err
    for text in (out, err, caplog.text):
        assert CANARY not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert CANARY.encode() not in path.read_bytes(), path
    blobs = [r.metadata for r in services.zenodo.records.values()]
    blobs += [f["data"] for i in services.ia.items.values() for f in i["files"].values()]
    blobs += [i["metadata"] for i in services.ia.items.values()]
    blobs += list(services.github.blobs.values()) + [r["body"] for r in services.github.releases.values()]
    for blob in blobs:
        assert CANARY not in (blob.decode("latin-1") if isinstance(blob, bytes) else json.dumps(blob))


def test_dry_run_plans_the_service_targets_with_reads_only(world: tuple[Path, Services, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, services, config = world
    assert main(["release", DEMO, "--targets", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{services.zenodo.url}/records/{{record_id}}/files/{DEMO}_v1.0.0.parquet?download=1" in out
    assert f"{services.ia.url}/download/{DEMO}_v1.0.0/{DEMO}_v1.0.0.parquet" in out
    assert f"{services.github.url}/dataforcanada/d4c/releases/download/{DEMO}/v1.0.0/{DEMO}_v1.0.0.parquet" in out
    # each service was asked, with its credentials, a harmless read; none was written to
    assert ("GET", "/api/user/records", 200) in services.zenodo.log
    assert ("GET", "/", 200) in services.ia.log
    assert ("GET", "/repos/dataforcanada/d4c", 200) in services.github.log
    for fake in (services.zenodo, services.ia, services.github):
        assert [e for e in fake.log if e[0] not in ("GET", "HEAD")] == []
    assert "found: no record of this version yet: prepare makes a draft and reserves its DOI" in out
    assert f"found: no release {DEMO}/v1.0.0 yet: prepare makes a draft" in out
    assert "blocked:" not in out
