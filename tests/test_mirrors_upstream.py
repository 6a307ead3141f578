"""The at-risk signal beyond the copies: an upstream source that is gone (404, 410) or
changed (its length, its ETag since the last check), against a real local HTTP server
as the upstream; and a retention or takedown date recorded in the recipe, carried by the
record into the catalog. Neither fails the run: the copies pass, the version is at risk."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from d4c.cli import main
from d4c.mirrors.run import Options, check, write_report
from test_mirrors_support import ID, HttpMirror, World

D1, D2 = "2026-12-01", "2026-12-02"
SOURCE = b"name,population\nOttawa,1017449\n" * 64
RETENTION = {"until": "2027-01-31", "reason": "the provider deletes releases after about 60 days"}


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[HttpMirror]:
    root = tmp_path / "upstream"
    (root / "files").mkdir(parents=True)
    (root / "files" / "capitals.csv").write_bytes(SOURCE)
    server = HttpMirror(root)
    try:
        yield server
    finally:
        server.close()


def world(tmp_path: Path, upstream: HttpMirror, **metadata: Any) -> World:
    source = {"name": "capitals", "sha256": hashlib.sha256(SOURCE).hexdigest(), "size": len(SOURCE),
              "url": f"{upstream.url}/files/capitals.csv", "path": None}
    # one mirror is enough here: the copies are not what these checks are about
    return World(tmp_path, None, None, None, mirrors=("http",), sources=(source,), metadata=metadata)


def run(w: World, date: str) -> Any:
    report = check(str(w.catalog), Options(tier=2, date=date, retries=1, backoff=0.01, min_copies=1,
                                           scrape=False), health_dir=w.tmp / "health")
    write_report(report, w.tmp / "health", 2)
    return report


def upstream_rows(report: Any) -> list[dict[str, Any]]:
    return [r for r in report.rows if r["check"] == "upstream"]


def risk(report: Any) -> Any:
    return report.risk[f"{ID}_v1-0-0"]


def reasons(report: Any) -> list[str]:
    """The at-risk reasons beyond the copies (one mirror here: one provider is a reason too)."""
    return [r for r in risk(report).reasons if not r.startswith("table:")]


def test_an_upstream_that_answers_is_no_risk_and_a_404_is(tmp_path: Path, upstream: HttpMirror) -> None:
    w = world(tmp_path, upstream)
    try:
        first = run(w, D1)
        [row] = upstream_rows(first)
        assert (row["status"], row["mirror"], row["file"]) == ("ok", "upstream", "capitals")
        assert row["etag"] and reasons(first) == []
        (upstream.root / "files" / "capitals.csv").unlink()
        gone = run(w, D2)
        [row] = upstream_rows(gone)
        assert (row["status"], row["http_status"]) == ("missing", 404)
        assert gone.failures == []  # every copy passes: the run does not fail
        assert risk(gone).at_risk and risk(gone).copies_ok == 1
        [why] = reasons(gone)
        assert why.startswith("upstream capitals gone") and "404" in why
        text = (w.tmp / "health" / f"{D2}.md").read_text()
        assert "upstream capitals gone" in text
    finally:
        w.close()


def test_a_410_a_new_length_and_a_new_etag_are_each_evidence(tmp_path: Path, upstream: HttpMirror) -> None:
    w = world(tmp_path, upstream)
    path = upstream.root / "files" / "capitals.csv"
    try:
        assert reasons(run(w, D1)) == []  # and the baseline ETag of the next check
        upstream.status["/files/capitals.csv"] = 410
        [row] = upstream_rows(check_only(w, D2))
        assert (row["status"], row["http_status"]) == ("missing", 410)
        del upstream.status["/files/capitals.csv"]
        path.write_bytes(SOURCE + b"Gatineau,291041\n")
        [row] = upstream_rows(rep := check_only(w, D2))
        assert row["status"] == "changed" and f"the build read {len(SOURCE)} bytes" in row["evidence"]
        assert [r.split(":")[0] for r in reasons(rep)] == ["upstream capitals changed"]
        path.write_bytes(SOURCE)  # the same length, but not the file the server had (mtime: ETag)
        os.utime(path, ns=(1, 1))
        [row] = upstream_rows(rep := check_only(w, D2))
        assert row["status"] == "changed" and "upstream ETag" in row["evidence"] and reasons(rep)
    finally:
        w.close()


def check_only(w: World, date: str) -> Any:
    return check(str(w.catalog), Options(tier=2, date=date, retries=1, backoff=0.01, min_copies=1,
                                         scrape=False), health_dir=w.tmp / "health")


def test_a_recorded_retention_date_reaches_the_catalog_and_puts_the_version_at_risk(
        tmp_path: Path, upstream: HttpMirror, capsys: pytest.CaptureFixture[str]) -> None:
    from d4c.catalog.validation import validate_item
    from d4c.catalog.writer import table_to_items

    w = world(tmp_path, upstream, retention=RETENTION)
    try:
        [item] = table_to_items(pq.read_table(w.catalog))
        props = item["properties"]
        assert (props["d4c:retention_until"], props["d4c:retention_reason"]) == (
            RETENTION["until"], RETENTION["reason"])
        assert validate_item(item) == []
        health_dir = w.tmp / "health"
        assert main(["mirrors", "check", "--catalog", str(w.catalog), "--date", D1,
                     "--min-copies", "1", "--health-dir", str(health_dir), "--no-progress",
                     "--no-scrape"]) == 0  # the copies pass
        assert "1 of 1 versions at risk" in capsys.readouterr().err
        rows = pq.read_table(health_dir / f"{D1}.parquet").to_pylist()
        [row] = [r for r in rows if r["check"] == "retention"]
        assert row["status"] == "warning" and row["evidence"] == (
            f"retention until {RETENTION['until']}: {RETENTION['reason']}")
        assert main(["mirrors", "annotate", "--catalog", str(w.catalog), "--health-dir",
                     str(health_dir), "--min-copies", "1"]) == 0
        [item] = table_to_items(pq.read_table(w.catalog))
        assert item["properties"]["d4c:at_risk"] is True and validate_item(item) == []
        past = check_only(w, "2027-02-01")
        assert reasons(past) == [f"retention passed 2027-01-31: {RETENTION['reason']}"]
    finally:
        w.close()
