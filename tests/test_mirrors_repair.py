"""`d4c mirrors repair` against real copies: a local target served over HTTP, a moto S3
server, the Zenodo and Internet Archive fakes. A deleted, a truncated and a
middle-byte-corrupted object are reported by `check`, restored by `repair` from a copy
that passed, and the next `check` is clean. Nothing is written when a repair is impossible."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from d4c.cli import main
from d4c.mirrors.run import Options, check, write_report
from fakes.internet_archive import FakeInternetArchive
from fakes.zenodo import FakeZenodo
from test_mirrors_check import _flip_middle_byte, bad
from test_mirrors_support import SIZE, World
from test_release_support import MotoS3, moto_s3  # noqa: F401

DATE = "2026-12-01"
KEY_VAR, SECRET_VAR = "D4C_TEST_REPAIR_KEY", "D4C_TEST_REPAIR_SECRET"


@pytest.fixture
def world(tmp_path: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("D4C_REPO", str(tmp_path))  # the journal and the staging under tmp/.d4c
    monkeypatch.setenv(KEY_VAR, "a")
    monkeypatch.setenv(SECRET_VAR, "b")
    zenodo, ia = FakeZenodo("zen-token"), FakeInternetArchive("a", "s")
    zenodo.start()
    ia.start()
    w = World(tmp_path, moto_s3, zenodo, ia)
    try:
        yield w
    finally:
        w.close()
        zenodo.stop()
        ia.stop()


def targets(w: World, journal_key: str = "private/journal/{id}/v{version}.json") -> Path:
    """The config the copies were published with: the HTTP mirror is a local target's folder."""
    doc = {"journal": {"target": "http", "key": journal_key},
           "targets": [
               {"name": "http", "kind": "local", "url": w.http.url + "/{key}",
                "options": {"path": str(w.tmp / "www")}},
               {"name": "s3", "kind": "s3", "url": f"{w.s3.endpoint}/{w.bucket}/{{key}}",
                "credentials": {"access_key_id": KEY_VAR, "secret_access_key": SECRET_VAR},
                "options": {"bucket": w.bucket, "endpoint_url": w.s3.endpoint}},
               {"name": "zenodo", "kind": "zenodo", "options": {"base_url": w.zenodo.url}},
               {"name": "ia", "kind": "internet-archive",
                "options": {"s3_url": w.ia.url, "archive_url": w.ia.url}}]}
    path = w.tmp / "targets.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def checked(w: World, tier: int = 3) -> dict[tuple[str, str], str]:
    report = check(str(w.catalog), Options(tier=tier, date=DATE, retries=0, backoff=0.01, scrape=False),
                   health_dir=w.tmp / "health")
    write_report(report, w.tmp / "health", tier)
    return bad(report)


def repair(w: World, *more: str, journal_key: str | None = None) -> int:
    conf = targets(w, journal_key) if journal_key else targets(w)
    return main(["mirrors", "repair", "--targets", str(conf),
                 "--health-dir", str(w.tmp / "health"), *more])


def s3_bytes(w: World, f: dict[str, Any]) -> bytes:
    return bytes(w.s3.client().get_object(Bucket=w.bucket, Key=w.key(f))["Body"].read())


def test_deleted_truncated_and_middle_byte_are_repaired_and_the_next_check_is_clean(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    data, manifest = world.data, world.files[2]
    world.s3.client().delete_object(Bucket=world.bucket, Key=world.key())  # deleted
    raw = manifest["path"].read_bytes()
    world.s3.client().put_object(Bucket=world.bucket, Key=world.key(manifest), Body=raw[:-9])  # truncated
    flipped = _flip_middle_byte(world)  # rot on the local target's disk, size and mtime kept
    assert checked(world) == {(data["file"], "s3"): "missing", (manifest["file"], "s3"): "corrupt",
                              (data["file"], "http"): "corrupt"}
    capsys.readouterr()
    assert repair(world, "--dry-run") == 0
    plan = capsys.readouterr().out
    assert "3 copies to repair" in plan and "blocked" not in plan
    assert f"repair http: {world.key()} ({data['file']}, corrupt, now other bytes)" in plan
    assert flipped.read_bytes() != data["path"].read_bytes()  # the dry run wrote nothing
    assert repair(world) == 0
    err = capsys.readouterr().err
    assert err.count("sha256 verified") == 2 and err.count("repaired ") == 4  # 3 copies + summary
    assert flipped.read_bytes() == data["path"].read_bytes()
    assert s3_bytes(world, data) == data["path"].read_bytes()
    assert s3_bytes(world, manifest) == raw
    head = world.s3.client().head_object(Bucket=world.bucket, Key=world.key(manifest))
    assert head["Metadata"]["sha256"] == manifest["sha256"]  # through the s3 plug-in's upload
    journal = json.loads((world.tmp / "www" / f"private/journal/mirrors-repair/v{DATE}.json").read_text())
    assert len(journal["repairs"]) == 3 and all(v["health"] == f"{DATE}.parquet"
                                                for v in journal["repairs"].values())
    assert not list((world.tmp / ".d4c" / "repair").iterdir())  # staging emptied
    assert checked(world) == {}
    assert repair(world) == 0  # nothing left: a no-op
    err = capsys.readouterr().err
    assert "repaired 0 copies" in err and "confirms them" not in err  # nothing to confirm


def test_a_service_copy_is_one_line_and_the_stores_are_still_repaired(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.zenodo.records[world.zen_id].files[world.data["file"]].data = b"short"
    world.s3.client().delete_object(Bucket=world.bucket, Key=world.key())
    assert checked(world, tier=1) == {(world.data["file"], "zenodo"): "corrupt",
                                      (world.data["file"], "s3"): "missing"}
    capsys.readouterr()
    assert repair(world) == 1  # a copy is left broken: the operator must act
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "zenodo" in ln]
    assert len(lines) == 1 and "not repaired in place" in lines[0]
    assert "published Zenodo records are immutable" in lines[0] and "release a new version" in lines[0]
    assert s3_bytes(world, world.data) == world.data["path"].read_bytes()
    assert checked(world, tier=1) == {(world.data["file"], "zenodo"): "corrupt"}


def test_a_refused_copy_is_looked_at_with_credentials_intact_is_a_policy_note_absent_is_repaired(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.http.status["/" + world.key()] = 403  # an anonymous read refused; our bytes still there
    assert checked(world, tier=1) == {(world.data["file"], "http"): "refused"}
    local = world.tmp / "www" / world.key()
    before = local.stat().st_mtime_ns
    capsys.readouterr()
    assert repair(world) == 1  # a copy is left failing: the operator must act
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if world.data["file"] in ln]
    assert "holds our bytes but refuses an anonymous read: fix its read policy" in line
    assert local.stat().st_mtime_ns == before  # nothing re-put
    # S3 without anonymous s3:ListBucket answers 403 for a deleted key too: the look finds it
    # absent, so it is put back
    local.unlink()
    assert repair(world) == 0
    assert "repaired http: " in capsys.readouterr().err
    assert local.read_bytes() == world.data["path"].read_bytes()


def test_nothing_is_written_unless_every_repair_is_possible(
        world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    world.s3.client().delete_object(Bucket=world.bucket, Key=world.key())
    manifest = world.files[2]
    (world.tmp / "www" / world.key(manifest)).write_bytes(b"{}")  # the local copy: repairable
    assert set(checked(world, tier=1).values()) == {"missing", "corrupt"}
    monkeypatch.delenv(SECRET_VAR)
    capsys.readouterr()
    assert repair(world) == 1
    err = capsys.readouterr().err
    assert f"environment variable {SECRET_VAR} is not set" in err and "Traceback" not in err
    assert (world.tmp / "www" / world.key(manifest)).read_bytes() == b"{}"  # untouched
    assert not (world.tmp / "www" / "private").exists()  # no journal either
    monkeypatch.setenv(SECRET_VAR, "b")
    assert repair(world, journal_key="ca_test_health/v-{id}-{version}.json") == 1  # in a public folder
    assert "is inside 'http''s public prefix" in capsys.readouterr().err
    assert (world.tmp / "www" / world.key(manifest)).read_bytes() == b"{}"
    monkeypatch.setenv(SECRET_VAR, "b")
    # every copy of the data file fails: there is nothing to repair it from
    world.http.lie["/" + world.key()] = b"x"
    (world.tmp / "www" / world.key()).write_bytes(b"x" * SIZE)
    world.zenodo.records[world.zen_id].files[world.data["file"]].data = b"short"
    world.ia.items[world.ident]["files"][world.data["file"]]["data"] = b"short"
    checked(world, tier=1)
    capsys.readouterr()
    assert repair(world, "--dry-run", "--format", "json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["possible"] is False and any("no copy of it passed" in p for p in plan["problems"])
    assert repair(world) == 1
    assert "no copy of it passed the last check" in capsys.readouterr().err
    assert (world.tmp / "www" / world.key(manifest)).read_bytes() == b"{}"
    (world.tmp / "health" / "2026-12-31.parquet").write_bytes(b"not parquet")  # the newest file
    assert repair(world) == 1
    err = capsys.readouterr().err
    assert "2026-12-31.parquet is not a health file d4c wrote" in err and "Traceback" not in err


def test_s3_addresses_in_the_catalog_are_not_copies_to_fetch(world: World) -> None:
    """The catalog's `<target>-s3` alternates (s3:// addresses, Portolan) name the same
    objects as that target's https copies: the check does not report them unreachable."""
    from d4c.catalog import build_catalog

    for f in world.record["files"]:
        f["storage"] = {"s3": f"s3://{world.bucket}/{world.key(f)}"}
    build_catalog([world.record], world.catalog, metadata=lambda r: r["metadata"])
    report = check(str(world.catalog), Options(tier=1, date=DATE, retries=0, scrape=False))
    assert bad(report) == {}
    assert not any(str(r["href"]).startswith("s3://") for r in report.rows)


def test_each_kind_replaces_a_damaged_object_through_its_public_api(world: World) -> None:
    """`replace` is the targets' own: the stores put our bytes over damaged ones and verify;
    a service refuses in one line with what to do instead (repair reaches no internals)."""
    from d4c.errors import D4CError
    from d4c.release import config as tconfig
    from d4c.release.targets import make_target

    cfg = tconfig.load(targets(world))
    data, key = world.data, world.key()
    local, s3 = make_target(cfg.config_of("http")), make_target(cfg.config_of("s3"))
    (world.tmp / "www" / key).write_bytes(b"rot" * 10)
    world.s3.client().put_object(Bucket=world.bucket, Key=key, Body=b"rot",
                                 Metadata={"sha256": "0" * 64})
    for t in (local, s3):
        assert t.REPLACES
        with pytest.raises(D4CError, match="exists with"):
            t.look(key, data["sha256"])  # other bytes: the release's own look refuses them
        t.replace(key, data["path"], data["sha256"], data["md5"])
        assert t.look(key, data["sha256"]) == "present"
        t.replace(key, data["path"], data["sha256"], data["md5"])  # again: idempotent
    assert s3_bytes(world, data) == data["path"].read_bytes()
    assert (world.tmp / "www" / key).read_bytes() == data["path"].read_bytes()
    zenodo = make_target(cfg.config_of("zenodo"))
    assert not zenodo.REPLACES
    with pytest.raises(D4CError) as err:
        zenodo.replace(key, data["path"], data["sha256"], data["md5"])
    assert "not replaced in place" in err.value.line() and "immutable" in err.value.line()
