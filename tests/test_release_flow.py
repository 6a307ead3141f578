"""`d4c release` end to end on the demo dataset: a local target and an S3 target (moto over
HTTP), dry run, reruns, a crash after every side effect, injected 429/503/resets, and a
canary secret that must never be written anywhere."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import json
import logging
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from d4c import schemas
from d4c.cli import main
from d4c.errors import D4CError
from d4c.release.orchestrate import release
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

OLD = f"dataforcanada/{DEMO}/processed/{DEMO}_v0.9.0.parquet"


class Crash(BaseException):
    """A forced crash: BaseException so that no `except Exception` in d4c can swallow it."""


@pytest.fixture
def repo(demo_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = fresh_repo(demo_build, tmp_path / "repo")
    monkeypatch.setenv("D4C_REPO", str(root))
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    return root


class World:
    """One local target + one S3 target (retain latest, Data for Canada layout)."""

    def __init__(self, root: Path, s3: MotoS3, tag: str, endpoint: str | None = None) -> None:
        self.root, self.s3 = root, s3
        self.bucket = s3.bucket(public=("dataforcanada/",))  # d4c/journal/ stays private
        self.local = root.parent / f"publish-{tag}"
        s3.client().put_object(Bucket=self.bucket, Key=OLD, Body=b"an older version")
        self.config = write_config(
            root.parent / f"targets-{tag}.yaml",
            local_target_yaml("mirror", self.local),
            s3_target_yaml("dfc", endpoint or s3.endpoint, self.bucket, retain="latest",
                           source_mirror=True, layout="dataforcanada/{id}/processed/{file}",
                           public=f"{s3.endpoint}/{self.bucket}", chunk=5 * 2**20),
            top="journal: {target: dfc}\n")
        for sub in ("releases", ".d4c/journal", ".d4c/catalog", ".d4c/release"):
            shutil.rmtree(root / sub, ignore_errors=True)

    def run(self, hook: Callable[[str], None] = lambda what: None) -> dict[str, Any] | None:
        return release(DEMO, targets_file=self.config, on_side_effect=hook, echo=lambda line: None)

    def state(self) -> dict[str, list[str]]:
        local = sorted(p.relative_to(self.local).as_posix() for p in self.local.rglob("*") if p.is_file())
        return {"mirror": local, "dfc": self.s3.keys(self.bucket)}

    def neutral(self, value: Any) -> Any:
        """`value` with this world's bucket and folder names replaced, to compare worlds."""
        text = json.dumps(value).replace(f"/{self.bucket}/", "/BUCKET/")
        return json.loads(text.replace(self.local.as_uri(), "LOCAL"))

    def record(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "releases" / DEMO / "1.0.0.json").read_text()))


def _expected(rec: dict[str, Any]) -> dict[str, list[str]]:
    files = [f["file"] for f in rec["files"]]
    src = [f"sources/sha256/{s['sha256'][:2]}/{s['sha256']}" for s in rec["sources"]]
    journal = f"d4c/journal/{DEMO}/v1.0.0.json"  # journal.target, outside the public prefix
    return {"mirror": sorted([f"{DEMO}/v1.0.0/{f}" for f in files] + src),
            "dfc": sorted([f"dataforcanada/{DEMO}/processed/{f}" for f in files] + [journal]
                          + [f"dataforcanada/{k}" for k in src])}


def _check(world: World) -> dict[str, Any]:
    rec = world.record()
    schemas.validator("release").validate(rec)
    assert world.state() == _expected(rec)  # each object once per target, old version gone
    assert sorted(p.name for p in (world.root / "releases").rglob("*.json")) == ["1.0.0.json"]
    return rec


def test_dry_run_prints_the_plan_and_touches_nothing(repo: Path, moto_s3: MotoS3,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    world = World(repo, moto_s3, "dry")
    before = sorted(str(p) for p in repo.parent.rglob("*"))
    assert main(["release", DEMO, "--targets", str(world.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"dataforcanada/{DEMO}/processed/{DEMO}_v1.0.0.parquet" in out
    assert "then delete older versions" in out
    # where the journal goes (docs/operators.md, the plan's step 5): journal.target's key, and here
    local = repo / ".d4c" / "journal" / DEMO / "v1.0.0.json"
    assert f"journal: dfc:d4c/journal/{DEMO}/v1.0.0.json, and {local}\n" in out
    assert sorted(str(p) for p in repo.parent.rglob("*")) == before
    assert moto_s3.keys(world.bucket) == [OLD]


def test_no_build_fails_with_the_way_to_make_one_and_never_builds(
        repo: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # release holds every credential: it must never run a transform, so never build
    import d4c.build.pipeline

    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("release ran a build")

    monkeypatch.setattr(d4c.build.pipeline, "build", no_build)
    world = World(repo, moto_s3, "nobuild")
    build_dir = repo / ".d4c" / "build" / DEMO / "v1.0.0"
    shutil.rmtree(build_dir)
    assert main(["release", DEMO, "--targets", str(world.config), "--dry-run"]) == 0
    assert f"build: {build_dir} (missing: build it first with `d4c build {DEMO} --check`)" in \
        capsys.readouterr().out
    assert main(["release", DEMO, "--targets", str(world.config)]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: no build of {DEMO} v1.0.0 at {build_dir} (hint: run `d4c build {DEMO} "
                   "--check` (in a shell or CI job without release credentials), then release)\n")
    assert not build_dir.exists() and not world.local.exists() and moto_s3.keys(world.bucket) == [OLD]
    assert not (repo / "releases" / DEMO).exists()


def _set_environment(build_dir: Path, **fields: str | None) -> None:
    """Rewrite the build's manifest `environment` (None deletes a field), as another build would."""
    mpath = build_dir / "manifest.json"
    manifest = json.loads(mpath.read_text())
    for key, value in fields.items():
        if value is None:
            manifest["environment"].pop(key, None)
        else:
            manifest["environment"][key] = value
    mpath.write_text(json.dumps(manifest))


def test_an_unsandboxed_build_is_refused(repo: Path, moto_s3: MotoS3,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    world = World(repo, moto_s3, "nosandbox")
    build_dir = repo / ".d4c" / "build" / DEMO / "v1.0.0"
    _set_environment(build_dir, sandbox="none")
    assert main(["release", DEMO, "--targets", str(world.config)]) == 1
    assert capsys.readouterr().err == (
        f"error: {build_dir / 'manifest.json'} was built without a sandbox (--no-sandbox); "
        f"release refuses it (hint: rebuild with `d4c build {DEMO} --check`)\n")
    assert not world.local.exists() and moto_s3.keys(world.bucket) == [OLD]


@pytest.mark.parametrize("fields,refused", [
    ({"sandbox": "none"}, True),
    ({"sandbox": "none", "network_isolation": "bwrap"}, True),  # the new field decides
    ({"sandbox": "bubblewrap"}, False),
    ({"sandbox": "container", "network_isolation": "container"}, False),
    ({"sandbox": None, "network_isolation": "none"}, True),  # an old manifest, run bare
    ({"sandbox": None, "network_isolation": "bwrap"}, False),  # an old manifest, isolated
    ({"sandbox": None, "network_isolation": "container"}, False),
], ids=["none", "none-over-old", "bubblewrap", "container", "old-none", "old-bwrap", "old-container"])
def test_sandbox_field_decides_what_release_accepts(repo: Path, fields: dict[str, str | None],
                                                    refused: bool) -> None:
    from d4c.recipe import load_id
    from d4c.release.files import build_dir_for, read_build

    rcp = load_id(DEMO, repo)
    build_dir = build_dir_for(repo, rcp)
    _set_environment(build_dir, **fields)
    if refused:
        with pytest.raises(D4CError, match=r"was built without a sandbox \(--no-sandbox\); release refuses it"):
            read_build(rcp, build_dir)
    else:
        raw, manifest = read_build(rcp, build_dir)
        assert raw == (build_dir / "manifest.json").read_bytes() and manifest["dataset"]["id"] == DEMO


def test_release_publishes_once_and_reruns_change_nothing(repo: Path, moto_s3: MotoS3) -> None:
    world = World(repo, moto_s3, "once")
    effects: list[str] = []
    rec = world.run(effects.append)
    assert rec is not None and _check(world) == rec
    assert any(e.startswith("cleanup dfc") for e in effects)
    data = next(f for f in rec["files"] if f["role"] == "data")
    assert data["urls"]["dfc"] == f"{moto_s3.endpoint}/{world.bucket}/dataforcanada/{DEMO}/processed/{data['file']}"
    (torrent,) = rec["torrents"]
    assert "ws=" not in torrent["magnet"]  # file:// is no web seed; the S3 target is latest-only
    raw = (repo / "releases" / DEMO / "1.0.0.json").read_bytes()
    again: list[str] = []
    said: list[str] = []
    release(DEMO, targets_file=world.config, on_side_effect=again.append, echo=said.append)
    assert again == [] and (repo / "releases" / DEMO / "1.0.0.json").read_bytes() == raw
    (line,) = said  # the rerun says how to check the copies, and checks nothing itself
    assert f"is already released (releases/{DEMO}/1.0.0.json)" in line
    assert f"`d4c mirrors check --targets {world.config}`" in line
    assert f"`d4c verify releases/{DEMO}/1.0.0.json`" in line
    said.clear()
    release(DEMO, targets_file=world.config, dry_run=True, echo=said.append)
    assert f"released: releases/{DEMO}/1.0.0.json exists" in said[0] and "blocked:" not in said[0]
    # A build of the released version with other bytes (the outsider's trial: 'already
    # released' on one config, 8 key conflicts on another, an upload plan in the dry run).
    other = json.loads(raw)
    other["manifest"]["outputs"][0]["sha256"] = "0" * 64
    (repo / "releases" / DEMO / "1.0.0.json").write_text(json.dumps(other))
    said.clear()
    release(DEMO, targets_file=world.config, dry_run=True, echo=said.append)
    assert f"blocked: {DEMO} v1.0.0 is already released with other bytes: " in said[0]
    with pytest.raises(D4CError, match="is already released with other bytes") as blocked:
        release(DEMO, targets_file=world.config, on_side_effect=again.append, echo=said.append)
    assert again == [] and "set a new version" in blocked.value.line()
    (repo / "releases" / DEMO / "1.0.0.json").write_bytes(raw)
    # a fresh machine: no local journal, no record: resumes from the primary target's journal
    for sub in ("releases", ".d4c/journal", ".d4c/release"):
        shutil.rmtree(repo / sub)
    fresh: list[str] = []
    world.run(fresh.append)
    assert not [e for e in fresh if e.startswith(("upload", "cleanup"))]
    assert (repo / "releases" / DEMO / "1.0.0.json").read_bytes() == raw
    _check(world)
    # the catalog got the version once, however many runs appended it
    catalog = pq.read_table(repo / ".d4c" / "catalog" / "catalog.parquet", columns=["id"])
    assert catalog.num_rows == 1


def test_a_crash_after_any_side_effect_is_resumed_by_a_rerun(repo: Path, moto_s3: MotoS3) -> None:
    counted: list[str] = []
    reference = World(repo, moto_s3, "ref")
    ref = reference.run(counted.append)
    assert ref is not None and len(counted) > 10
    for n in range(1, len(counted) + 1):
        world = World(repo, moto_s3, f"crash{n}")
        seen = 0

        def crash_at(what: str, n: int = n) -> None:
            nonlocal seen
            seen += 1
            if seen == n:
                raise Crash(what)

        with pytest.raises(Crash):
            world.run(crash_at)
        if n < len(counted) - 1:  # the record is among the last side effects
            assert not (repo / "releases" / DEMO / "1.0.0.json").exists()
        if "cleanup" not in " ".join(counted[:n]):
            assert OLD in moto_s3.keys(world.bucket)  # latest-only target never left empty
        world.run()
        rec = _check(world)
        for key in ("files", "torrents", "sources", "manifest"):
            assert world.neutral(_unbundled(rec[key])) == reference.neutral(_unbundled(ref[key])), (n, key)
        # the bundle names this world's mirrors (mirrors.json, README.md): the same once neutral
        assert world.neutral(_mirrors_json(world, rec)) == reference.neutral(_mirrors_json(reference, ref))


def _unbundled(value: Any) -> Any:
    """Files without the bundle's digests, which depend on the world's mirror URLs."""
    if isinstance(value, list):
        return [{k: v for k, v in f.items() if k not in ("sha256", "md5", "size")}
                if isinstance(f, dict) and f.get("role") == "bundle" else f for f in value]
    return value


def _mirrors_json(world: World, rec: dict[str, Any]) -> Any:
    import tarfile

    bundle = next(f for f in rec["files"] if f["role"] == "bundle")
    path = world.local / DEMO / "v1.0.0" / bundle["file"]
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/mirrors.json"))
        data = tar.extractfile(member)
        assert data is not None
        return json.loads(data.read())


def test_parallel_uploads_start_nothing_after_a_crash(repo: Path, moto_s3: MotoS3) -> None:
    """Two files in flight on the S3 target: a crash right after the first upload leaves at
    most the one in flight beside it, and the rerun converges on the reference result."""
    world = World(repo, moto_s3, "parallel")
    text = world.config.read_text().replace("      max_attempts: 10\n",
                                            "      max_attempts: 10\n      parallel_uploads: 2\n")
    world.config.write_text(text)
    assert "parallel_uploads: 2" in text

    def crash_at_first_s3_upload(what: str) -> None:
        if what.startswith("upload:dfc:"):
            raise Crash(what)

    with pytest.raises(Crash):
        world.run(crash_at_first_s3_upload)
    new = [k for k in moto_s3.keys(world.bucket) if k != OLD and not k.startswith("d4c/")]
    assert 1 <= len(new) <= 2, new  # the crashed one, and at most one already in flight
    world.run()
    rec = _check(world)
    assert len(rec["files"]) + len(rec["sources"]) > 2  # more files than slots: a real bound


def test_faults_429_503_and_resets_are_retried(repo: Path, moto_s3: MotoS3) -> None:
    proxy = FaultProxy(moto_s3.endpoint)
    kinds = ["503", "429", "reset-before", "reset-after"]
    proxy.plan = lambda n, method, path: kinds[(n // 3) % 4] if n % 3 == 0 else None
    try:
        world = World(repo, moto_s3, "faults", endpoint=proxy.url)
        world.run()
    finally:
        proxy.close()
    _check(world)
    injected = {f.split()[0] for f in proxy.faults}
    assert injected == set(kinds), proxy.faults


def test_canary_secret_never_appears_anywhere(repo: Path, moto_s3: MotoS3, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capfd: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    canary = "CANARY" + secrets.token_hex(8)  # made at run time: the test file holds no copy
    monkeypatch.setenv("D4C_TEST_S3_KEY", canary + "KEYID")
    monkeypatch.setenv("D4C_TEST_S3_SECRET", canary + "SECRET")
    world = World(repo, moto_s3, "canary")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step-summary.md"))
    caplog.set_level(logging.DEBUG)
    assert main(["-v", "release", DEMO, "--targets", str(world.config)]) == 0
    # and a failing run: the error line must not carry it either
    bad = write_config(tmp_path / "bad.yaml", s3_target_yaml("x", moto_s3.endpoint, "no-such-bucket"))
    assert main(["release", DEMO, "--targets", str(bad)]) == 1
    out, err = capfd.readouterr()
    assert "boto" in caplog.text.lower() or "s3" in caplog.text.lower()  # debug logs did flow
    for text in (out, err, caplog.text):
        assert canary not in text
    assert f"Released {DEMO} v1.0.0" in (tmp_path / "step-summary.md").read_text()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    for key in moto_s3.keys(world.bucket):
        body = moto_s3.client().get_object(Bucket=world.bucket, Key=key)["Body"].read()
        assert canary.encode() not in body, key


def test_dry_run_without_credentials_still_plans_and_names_the_variable(
        repo: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = World(repo, moto_s3, "nocreds")
    monkeypatch.delenv("D4C_TEST_S3_SECRET")
    assert main(["release", DEMO, "--targets", str(world.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"dataforcanada/{DEMO}/processed/{DEMO}_v1.0.0.parquet" in out
    assert "D4C_TEST_S3_SECRET" in out
    # the real run refuses before its first side effect
    assert main(["release", DEMO, "--targets", str(world.config)]) == 1
    assert "D4C_TEST_S3_SECRET" in capsys.readouterr().err
    assert not world.local.exists() and moto_s3.keys(world.bucket) == [OLD]


def test_catalog_on_s3_is_appended_with_the_targets_own_client(repo: Path, moto_s3: MotoS3) -> None:
    """`catalog: s3://...` in the targets config uses the matching s3 target's endpoint and
    credentials (not boto3's defaults, which point at AWS and would fail here)."""
    world = World(repo, moto_s3, "s3cat")
    key = "catalog/catalog.parquet"
    text = world.config.read_text()
    world.config.write_text(f"catalog: s3://{world.bucket}/{key}\n{text}")
    rec = world.run()
    assert rec is not None
    body = moto_s3.client().get_object(Bucket=world.bucket, Key=key)["Body"].read()
    table = pq.read_table(pa.BufferReader(body), columns=["id", "collection"])
    assert [row["collection"] for row in table.to_pylist()] == [DEMO]  # the item id is the catalog's
    assert not (repo / ".d4c" / "catalog" / "catalog.parquet").exists()


def test_a_key_taken_after_the_plan_found_it_absent_is_never_overwritten(repo: Path, moto_s3: MotoS3) -> None:
    """The plan's listing says absent, then other bytes land at the key (a race, or what a
    listing that omits a held key amounts to): the conditional PUT's 412 is looked at, the
    release stops in one line naming the key, their bytes stay, no record is written."""
    from d4c.release.orchestrate import execute
    from d4c.release.plan import plan

    world = World(repo, moto_s3, "taken")
    p = plan(DEMO, world.config)
    a = next(a for a in p.of("upload", "dfc") if a.file.endswith(".parquet"))
    assert a.exists == "absent"
    moto_s3.client().put_object(Bucket=world.bucket, Key=a.key, Body=b"someone else's bytes")
    with pytest.raises(D4CError, match="exists with a different sha256") as err:
        execute(p, echo=lambda line: None)
    assert a.key in err.value.line() and "\n" not in err.value.line()
    assert moto_s3.client().get_object(Bucket=world.bucket, Key=a.key)["Body"].read() == b"someone else's bytes"
    assert not (repo / "releases" / DEMO / "1.0.0.json").exists()
