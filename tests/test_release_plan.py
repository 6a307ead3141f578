"""`d4c release` plans before it acts: with any credential unset, a rejected token or an
unreachable store, it fails before a single request that writes (moto behind a counting
proxy and the service fakes record zero PUT/POST/PATCH/DELETE) and names the problem;
`--dry-run [--format json]` prints the plan with what each target already holds."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from d4c.cli import main
from fakes.github import FakeGitHub
from fakes.internet_archive import FakeInternetArchive
from fakes.zenodo import FakeZenodo
from test_release_support import (  # noqa: F401 - fixtures
    DEMO,
    S3_ENV,
    FaultProxy,
    MotoS3,
    demo_build,
    fresh_repo,
    local_target_yaml,
    moto_s3,
    s3_target_yaml,
    write_config,
)

SECRET = "CANARY" + hashlib.sha256(b"d4c plan").hexdigest()[:10]  # made here, never written
ENV = {**S3_ENV, "ZENODO_TOKEN": SECRET + "zen", "GITHUB_TOKEN": SECRET + "gh",
       "IA_ACCESS_KEY": SECRET + "iaA", "IA_SECRET_KEY": SECRET + "iaS"}
WRITES = {"PUT", "POST", "PATCH", "DELETE"}


@dataclass
class World:
    root: Path
    config: Path
    publish: Path
    bucket: str
    proxy: FaultProxy
    zenodo: FakeZenodo
    ia: FakeInternetArchive
    github: FakeGitHub

    def writes(self) -> list[tuple[str, str]]:
        """Every request that would write, on every store and service."""
        seen = [(m, p) for m, p in self.proxy.requests if m in WRITES]
        for fake in (self.zenodo, self.ia, self.github):
            seen += [(m, p) for m, p, _ in fake.log if m in WRITES]
        return seen

    def untouched(self) -> bool:
        return (not self.writes() and not self.publish.exists()
                and not (self.root / "releases" / DEMO).exists()
                and not (self.root / ".d4c" / "journal").exists())


@pytest.fixture
def world(demo_build: Path, moto_s3: MotoS3, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    root = fresh_repo(demo_build, tmp_path / "repo")
    monkeypatch.setenv("D4C_REPO", str(root))
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    proxy = FaultProxy(moto_s3.endpoint)  # no faults: it counts what reaches moto
    zenodo, ia, github = FakeZenodo(ENV["ZENODO_TOKEN"]), FakeInternetArchive(
        ENV["IA_ACCESS_KEY"], ENV["IA_SECRET_KEY"]), FakeGitHub(ENV["GITHUB_TOKEN"])
    for fake in (zenodo, ia, github):
        fake.start()
    bucket = moto_s3.bucket(public=(f"{DEMO}/", "sources/"))
    publish = tmp_path / "publish"
    config = write_config(
        tmp_path / "targets.yaml", local_target_yaml("mirror", publish),
        s3_target_yaml("dfc", proxy.url, bucket, retain="latest", source_mirror=True),
        f"  - name: zenodo\n    kind: zenodo\n    credentials: {{token: ZENODO_TOKEN}}\n"
        f"    options: {{base_url: \"{zenodo.url}\", index_lag_seconds: 0}}\n",
        f"  - name: ia\n    kind: internet-archive\n"
        f"    credentials: {{access: IA_ACCESS_KEY, secret: IA_SECRET_KEY}}\n"
        f"    options: {{s3_url: \"{ia.url}\", archive_url: \"{ia.url}\", settle_seconds: 5}}\n",
        f"  - name: github\n    kind: github\n    credentials: {{token: GITHUB_TOKEN}}\n"
        f"    options: {{repo: dataforcanada/d4c, api_url: \"{github.url}\", web_url: \"{github.url}\"}}\n")
    try:
        yield World(root, config, publish, bucket, proxy, zenodo, ia, github)
    finally:
        for fake in (zenodo, ia, github):
            fake.stop()
        proxy.close()


@pytest.mark.parametrize("var", sorted(ENV))
def test_each_unset_credential_stops_the_release_before_any_write(
        world: World, var: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(var)
    assert main(["release", DEMO, "--targets", str(world.config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"environment variable {var} is not set" in err, err
    assert SECRET not in err
    assert world.writes() == [] and world.untouched()
    # the dry run shows the same problem in the plan, and still writes nothing
    assert main(["release", DEMO, "--targets", str(world.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "blocked: target " in out and var in out
    assert world.untouched()


def test_every_unset_credential_is_named_at_once(world: World, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("GITHUB_TOKEN", "IA_SECRET_KEY"):
        monkeypatch.delenv(var)
    assert main(["release", DEMO, "--targets", str(world.config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 problems stop the release: ") and err.count("\n") == 1
    assert "GITHUB_TOKEN" in err and "IA_SECRET_KEY" in err
    assert world.untouched()


@pytest.mark.parametrize("broken", ["github-token", "github-read-only", "zenodo-token", "ia-keys",
                                    "bucket"])
def test_a_rejected_credential_or_missing_store_stops_it_before_any_write(
        world: World, broken: str, capsys: pytest.CaptureFixture[str]) -> None:
    if broken == "github-token":
        world.github.token = "rotated"
    elif broken == "github-read-only":
        world.github.push = False
    elif broken == "zenodo-token":
        world.zenodo.token = "rotated"
    elif broken == "ia-keys":
        world.ia.auth = "LOW rotated:keys"
    else:
        world.config.write_text(world.config.read_text().replace(world.bucket, "no-such-bucket"))
    assert main(["release", DEMO, "--targets", str(world.config)]) == 1
    err = capsys.readouterr().err
    expected = {"github-token": "401", "github-read-only": "may not write to dataforcanada/d4c",
                "zenodo-token": "403", "ia-keys": "403", "bucket": "HEAD s3://no-such-bucket/"}[broken]
    assert expected in err and SECRET not in err, err
    assert world.untouched()


def test_dry_run_json_lists_every_action_and_what_is_there(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["release", DEMO, "--targets", str(world.config), "--dry-run", "--format", "json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["possible"] is True and before["problems"] == []
    local = str(world.root / ".d4c" / "journal" / DEMO / "v1.0.0.json")  # no journal: in the config
    assert before["journal"] == {"target": None, "key": None, "local": local}
    assert [t["name"] for t in before["targets"]] == ["mirror", "dfc", "zenodo", "ia", "github"]
    uploads = [a for a in before["actions"] if a["op"] == "upload"]
    data = f"{DEMO}_v1.0.0.parquet"
    assert {a["target"] for a in uploads if a["file"] == data} == {"mirror", "dfc", "zenodo", "ia", "github"}
    assert all(a["exists"] in ("absent", "made during the run") for a in uploads), uploads
    sized = [a for a in uploads if a["file"] == data]
    assert all(a["size"] > 0 and len(a["sha256"]) == 64 for a in sized)
    assert [a["op"] for a in before["actions"]][-2:] == ["record", "catalog"]
    assert {a["step"] for a in before["actions"]} >= {"prepare:zenodo", "prepare:github", "cleanup:dfc",
                                                      "finalize:zenodo", "finalize:github", "record"}
    assert world.untouched()
    # after the release, the same plan finds everything in place
    assert main(["release", DEMO, "--targets", str(world.config)]) == 0
    capsys.readouterr()
    assert main(["release", DEMO, "--targets", str(world.config), "--dry-run", "--format", "json"]) == 0
    after = json.loads(capsys.readouterr().out)
    looked = [a for a in after["actions"] if a["op"] == "upload" and a["sha256"]]
    assert looked and all(a["exists"] == "present" for a in looked), looked
    assert next(a for a in after["actions"] if a["op"] == "record")["exists"] == "present"
    notes = {t["name"]: t["notes"] for t in after["targets"]}
    assert any(n.startswith("published record") for n in notes["zenodo"])
    assert any(n.startswith(f"published release {DEMO}/v1.0.0") for n in notes["github"])


def test_no_function_in_release_is_over_60_lines() -> None:
    release = Path(__file__).resolve().parent.parent / "scripts" / "d4c" / "release"
    long = [(p.name, n.name, n.end_lineno - n.lineno + 1)  # type: ignore[operator]
            for p in sorted(release.rglob("*.py"))
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.end_lineno - n.lineno + 1 > 60]  # type: ignore[operator]
    assert long == []
