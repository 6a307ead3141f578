"""`d4c mirrors check` against real copies: a local HTTP mirror, a moto S3 server, the Zenodo
and Internet Archive fakes. Each fault (deleted, truncated, a byte corrupted in the middle,
a changed ETag, a mirror down, a 200 with the wrong length) is detected and named."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from d4c.cli import main
from d4c.mirrors import health
from d4c.mirrors.checks import choose_pieces
from d4c.mirrors.run import Options, check
from fakes.internet_archive import FakeInternetArchive
from fakes.zenodo import FakeZenodo
from test_mirrors_support import PIECE, SIZE, World
from test_release_support import MotoS3, moto_s3  # noqa: F401

DATE = "2026-12-01"


@pytest.fixture
def world(tmp_path: Path, moto_s3: MotoS3) -> Iterator[World]:
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


def run(w: World, tier: int = 2, date: str = DATE, **kw: Any) -> Any:
    opts = Options(tier=tier, date=date, retries=1, backoff=0.01, **kw)
    return check(str(w.catalog), opts, health_dir=w.tmp / "health")


def bad(report: Any) -> dict[tuple[str, str], str]:
    """(file, mirror) -> status of each failing copy."""
    return {(r["file"], r["mirror"]): r["status"] for r in report.failures}


def test_a_clean_world_passes_every_tier_on_every_mirror(world: World) -> None:
    report = run(world, tier=3)
    assert bad(report) == {}
    mirrors = {r["mirror"] for r in report.rows if r["tier"] == 1}
    assert mirrors == {"http", "s3", "zenodo", "ia"}  # http: the main href (its d4c:mirror), first in config
    checks = {(r["mirror"], r["check"]) for r in report.rows if r["asset"] == "table"}
    # each service's own checksum was compared: Zenodo md5, IA md5, S3 ETag + sha256
    for mirror in ("s3", "zenodo", "ia"):
        assert (mirror, "checksum") in checks
    s3 = next(r for r in report.rows if r["mirror"] == "s3" and r["check"] == "checksum" and r["asset"] == "table")
    assert "S3 ETag (single-part md5)" in s3["evidence"] and "x-amz-checksum-sha256" in s3["evidence"]
    pieces = [r for r in report.rows if r["check"] == "pieces"]
    assert len(pieces) == 4 and all(r["status"] == "ok" for r in pieces)
    assert all(r["bytes_read"] == 4 * PIECE for r in pieces)
    assert {r["status"] for r in report.rows if r["tier"] == 3} == {"ok"}
    risk = report.risk[f"{world.record['id']}_v1-0-0"]
    assert risk.copies_ok == 4 and not risk.at_risk  # four copies on four providers (ports)


def test_cli_writes_the_health_file_and_the_summary(world: World, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "health"
    assert main(["mirrors", "check", "--catalog", str(world.catalog), "--date", DATE,
                 "--health-dir", str(out), "--no-progress"]) == 0
    rows = pq.read_table(out / f"{DATE}.parquet").to_pylist()
    assert rows and set(rows[0]) >= {"status", "evidence", "checked_at", "file", "mirror", "check"}
    text = (out / f"{DATE}.md").read_text()
    assert summary.read_text() == text and "### Failing copies: 0" in text
    assert "checked 12 copies of 3 artifacts" in capsys.readouterr().err


def test_deleted_object_is_missing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.s3.client().delete_object(Bucket=world.bucket, Key=world.key())
    assert bad(run(world)) == {(world.data["file"], "s3"): "missing"}
    assert main(["mirrors", "check", "--catalog", str(world.catalog), "--date", DATE, "--retries", "0",
                 "--health-dir", str(world.tmp / "h2"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {world.data['file']} on mirror s3 (" in err and "missing" in err
    # The count is of copies: the fresh and head checks of one deleted copy are one copy.
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert err.rstrip().endswith(f"{len(errors)} failing checks of 1 copy (missing, refused, corrupt, "
                                 "changed or unreachable)"), err


def test_403_is_refused_not_missing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.http.status["/" + world.key()] = 403  # a read policy denies it; the bytes may be there
    assert bad(run(world, tier=1)) == {(world.data["file"], "http"): "refused"}
    assert main(["mirrors", "check", "--catalog", str(world.catalog), "--date", DATE, "--retries", "0",
                 "--tier", "1", "--health-dir", str(world.tmp / "h2"), "--no-progress"]) == 1
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if world.data["file"] in ln]
    assert "refused, tier 1 head: HTTP 403" in line and "missing" not in line
    assert "| refused |" in (world.tmp / "h2" / f"{DATE}.md").read_text()


def test_truncated_object_is_corrupt(world: World) -> None:
    raw = world.data["path"].read_bytes()
    world.s3.client().put_object(Bucket=world.bucket, Key=world.key(), Body=raw[:-1000])
    report = run(world)
    assert bad(report) == {(world.data["file"], "s3"): "corrupt"}
    (row,) = report.failures
    assert f"Content-Length {SIZE - 1000}, expected file:size {SIZE}" in row["evidence"]


def test_truncated_file_on_zenodo_and_ia_by_their_listed_checksums(world: World) -> None:
    world.zenodo.records[world.zen_id].files[world.data["file"]].data = b"short"
    world.ia.items[world.ident]["files"][world.data["file"]]["data"] = b"short"
    assert bad(run(world)) == {(world.data["file"], "zenodo"): "corrupt",
                               (world.data["file"], "ia"): "corrupt"}


def _flip_middle_byte(world: World) -> Path:
    """Rot on the HTTP mirror's disk: one byte in the middle, size and mtime kept (so the
    ETag, the length and every header stay as they were)."""
    path = world.tmp / "www" / world.key()
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[SIZE // 2 + 7] ^= 0xFF
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return path


def test_middle_byte_tier1_blind_tier2_within_documented_runs_tier3_always(world: World) -> None:
    _flip_middle_byte(world)
    bad_piece = (SIZE // 2 + 7) // PIECE
    assert bad(run(world, tier=1)) == {}  # HEAD cannot see it: same length, same ETag
    # Tier 2: 4 of 16 pieces a run, p = 1/4 a run; docs/mirrors.md: 17 runs give >= 99%.
    dates = [f"2026-12-{d:02d}" for d in range(1, 18)]
    caught = [d for d in dates if bad_piece in choose_pieces(d, world.data["sha256"], 16, 4)]
    assert caught, "tier 2 missed the byte in the documented number of runs"
    first = caught[0]
    assert bad(run(world, date=first)) == {(world.data["file"], "http"): "corrupt"}
    missed = next((d for d in dates if d not in caught), None)
    if missed:
        assert bad(run(world, date=missed)) == {}
    report = run(world, tier=3, date=missed or first)  # the rolling sample re-hashes it
    assert bad(report) == {(world.data["file"], "http"): "corrupt"}
    assert any(r["tier"] == 3 and r["status"] == "corrupt" for r in report.rows)


def test_changed_etag_is_reported_then_tier3_settles_it(world: World) -> None:
    health.write(run(world, tier=1).rows, world.tmp / "health" / "2026-11-30.parquet")
    raw = world.data["path"].read_bytes()
    world.s3.client().put_object(Bucket=world.bucket, Key=world.key(), Body=raw)  # new ETag? same md5
    path = world.tmp / "www" / world.key()
    os.utime(path, ns=(1, 1))  # same bytes, a new ETag on the HTTP mirror
    report = run(world, tier=1)
    assert bad(report) == {(world.data["file"], "http"): "changed"}
    (row,) = report.failures
    assert "was" in row["evidence"]
    assert bad(run(world, tier=3)) == {}  # re-hashed: the bytes are ours


def test_mirror_down_is_unreachable_for_every_file(world: World) -> None:
    world.ia.stop()
    report = run(world)
    assert set(bad(report).values()) == {"unreachable"}
    assert {m for _, m in bad(report)} == {"ia"}
    assert len(bad(report)) == 3  # data, torrent, manifest
    fresh = [r for r in report.rows if r["tier"] == 0 and r["mirror"] == "ia"]
    assert fresh and fresh[0]["status"] == "unreachable"


def test_a_down_mirror_is_d4cs_line_without_urllib3s_retry_warnings(
        world: World, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    world.ia.stop()  # connection refused: urllib3 logs a WARNING per retry
    caplog.set_level(logging.DEBUG, logger="urllib3")
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    try:
        assert main(["mirrors", "check", "--catalog", str(world.catalog), "--date", DATE, "--tier", "1",
                     "--retries", "1", "--health-dir", str(world.tmp / "h6"), "--no-progress"]) == 1
    finally:
        pool_log.setLevel(level)
    assert not [r for r in caplog.records if r.name.startswith("urllib3") and r.levelno >= logging.WARNING]
    assert "unreachable" in capsys.readouterr().err  # d4c's own line is kept


def test_200_with_the_wrong_length(world: World) -> None:
    world.http.lie["/" + world.key()] = b"<html>maintenance</html>"
    report = run(world)
    assert bad(report) == {(world.data["file"], "http"): "corrupt"}


def test_at_risk_with_fewer_than_n_passing_copies_and_annotated_catalog(world: World, tmp_path: Path) -> None:
    world.s3.client().delete_object(Bucket=world.bucket, Key=world.key())
    world.ia.stop()
    report = run(world, min_copies=3)
    risk = report.risk[f"{world.record['id']}_v1-0-0"]
    assert risk.copies_ok == 2 and risk.at_risk
    from d4c.mirrors.run import write_report

    write_report(report, world.tmp / "health", 2)
    assert main(["mirrors", "annotate", "--catalog", str(world.catalog),
                 "--health-dir", str(world.tmp / "health")]) == 0
    from d4c.catalog.append import read_catalog
    from d4c.catalog.validation import validate_item
    from d4c.catalog.writer import table_to_items

    (item,) = table_to_items(read_catalog(world.catalog)[0])
    assert item["properties"]["d4c:copies_ok"] == 2 and item["properties"]["d4c:at_risk"] is True
    assert item["properties"]["d4c:last_verified"].startswith("20")
    assert validate_item(item) == []
    assert json.dumps(item)
